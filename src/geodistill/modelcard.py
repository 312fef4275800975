"""A model card's shared parts: the Hub's YAML front matter, the evaluation section, and what a run
folder records (its eval.json, its training config). Every family's export writes its card with these."""

from __future__ import annotations

import json
from pathlib import Path

from geodistill.errors import GeodistillError
from geodistill.runfolder import RunFolder

# OpenAI's hub ids of the embedded models, for the model card's base_model
HUB_IDS = {"tiny.en": "openai/whisper-tiny.en", "base": "openai/whisper-base"}


def find_eval(run_dir: Path | None, eval_json: str | Path | None) -> dict | None:
    """The evaluation the card quotes: ``eval_json`` if given, else the run's newest eval.json, else None."""
    if eval_json is not None:
        path = Path(eval_json)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GeodistillError(f"--eval {path}: unreadable eval.json ({exc})") from exc
    evals = RunFolder(run_dir).evals() if run_dir is not None else []
    return evals[0][1] if evals else None


def dataset_name(spec: str) -> str:
    """A data spec as a public card names it: a Hub dataset by its id, a local file or folder by its own
    name only (a card shows no local path)."""
    for prefix in ("hf:", "hub:"):
        if spec.startswith(prefix):
            return spec.removeprefix(prefix)
    path = Path(spec)
    return (path.stem if path.suffix else path.name) or spec


def evaluation_lines(evaluation: dict | None) -> list[str]:
    """The card's "Evaluation" section (none without an evaluation)."""
    if not evaluation or "wer" not in evaluation:
        return []
    return [
        "## Evaluation",
        "",
        f"WER {100 * evaluation['wer']:.2f} % (normalised), "
        f"RTF {evaluation.get('rtf', float('nan')):.4f} "
        f"on `{dataset_name(str(evaluation.get('data')))}` ({evaluation.get('n_utterances')} utterances, "
        f"{evaluation.get('device')}, batch {evaluation.get('batch_size')}), measured by "
        "`geodistill evaluate`.",
        "",
    ]


def training_record(run_dir: Path | None) -> dict:
    """The run's resolved config as training_config.json records it ({} without a run or a record)."""
    record = RunFolder(run_dir).record() if run_dir is not None else None
    return (record or {}).get("config", {})


def hub_id(spec: str | None) -> str | None:
    """A hub id for base_model: the embedded models' OpenAI ids, or an ``org/name`` spec that is no path."""
    if not spec:
        return None
    if spec in HUB_IDS:
        return HUB_IDS[spec]
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")) and not Path(spec).exists():
        return spec
    return None


def front_matter(
    multilingual: bool, name: str, cfg: dict, evaluation: dict | None, license: str, family: str = "whisper"
) -> dict:
    """The Hub's YAML front matter: task, license, tags, language, base model (the teacher), evaluation."""
    language = cfg.get("data", {}).get("language") or ("en" if not multilingual else None)
    meta: dict = {
        "library_name": "transformers",
        "pipeline_tag": "automatic-speech-recognition",
        "license": license,
        "tags": [family, "distillation", "geodistill"],
    }
    if language:
        meta["language"] = [language]
    base = hub_id(cfg.get("teacher"))
    if base:
        meta["base_model"] = base
    if evaluation and "wer" in evaluation:
        metrics = [{"type": "wer", "value": round(100 * evaluation["wer"], 2), "name": "WER (normalised, %)"}]
        if "rtf" in evaluation:
            metrics.append({"type": "rtf", "value": round(evaluation["rtf"], 4), "name": "real-time factor"})
        data = dataset_name(str(evaluation.get("data", "evaluation set")))
        meta["model-index"] = [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "automatic-speech-recognition", "name": "Speech Recognition"},
                        "dataset": {"name": data, "type": data},
                        "metrics": metrics,
                    }
                ],
            }
        ]
    return meta
