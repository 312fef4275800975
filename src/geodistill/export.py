"""``geodistill export``: ship a student as a plain Hugging Face Whisper folder or a CTranslate2 model.

- ``hf``: ``model.safetensors`` (adapters already merged by the run), ``config.json``,
  ``generation_config.json``, the processor files and a ``README.md`` model card with the Hub's YAML
  front matter (WER/RTF from the run's own ``eval.json`` when there is one). Loading it needs
  transformers only.
- ``ct2``: CTranslate2's own ``TransformersConverter`` over that HF folder, plus the ``tokenizer.json`` and
  ``preprocessor_config.json`` faster-whisper reads; loads in ``faster_whisper.WhisperModel(DIR)``.

The source is a run folder (``best/`` if present, else ``adapter_final/``) or any model spec
``geodistill.models.load_whisper`` accepts. A CTC student (its run folder or its folder) exports to ``hf``
only, as its own safetensors folder (``geodistill.export_ctc``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Literal

import yaml

from geodistill.errors import GeodistillError
from geodistill.models.loading import EMBEDDED, RUN_SUBDIRS, is_ctc_spec, saved_student
from geodistill.optional import require

Format = Literal["hf", "ct2"]
FORMATS: tuple[str, ...] = ("hf", "ct2")
QUANTIZATIONS: tuple[str, ...] = ("int8", "int8_float32", "float16", "float32")
# what faster-whisper reads next to model.bin (preprocessor_config.json gives it the mel-bin count)
CT2_COPY_FILES = ("tokenizer.json", "preprocessor_config.json")
# OpenAI's hub ids of the embedded models, for the model card's base_model
HUB_IDS = {"tiny.en": "openai/whisper-tiny.en", "base": "openai/whisper-base"}
# a dynamic-context student's rule (geodistill.models.context), kept next to a CTranslate2 export
CONTEXT_KEYS = ("geodistill_audio_context", "geodistill_context_margin")
CONTEXT_FILE = "geodistill_context.json"
RUN_MARKERS = ("training_config.json", "checkpoint.pt")  # files that make a folder a geodistill run


def _is_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / m).exists() for m in RUN_MARKERS)


def run_student_dir(run_dir: Path) -> Path:
    """The finished student of a run folder: ``best/`` if it holds a model, else ``adapter_final/``.

    Raises GeodistillError (one line) when neither holds a model (``config.json`` or ``ctc_config.json``).
    """
    found = saved_student(run_dir)
    if found is None:
        raise GeodistillError(
            f"{run_dir}: no finished student (neither {' nor '.join(f'{s}/' for s in RUN_SUBDIRS)} holds a "
            "model); let the run finish or point at a checkpointed student folder"
        )
    return found


def _check_choices(fmt: str, quantization: str | None) -> None:
    if fmt not in FORMATS:
        raise GeodistillError(f"--format: unknown format '{fmt}' (choose {' or '.join(FORMATS)})")
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise GeodistillError(
            f"--quantization: unknown quantisation '{quantization}' (choose {', '.join(QUANTIZATIONS)})"
        )
    if quantization is not None and fmt != "ct2":
        raise GeodistillError("--quantization applies to --format ct2 only (hf exports keep float32)")


def resolve_source(source: str, work: Path) -> tuple[Path, Path | None]:
    """(HF folder, run folder or None) behind ``source``; hub/embedded models are saved to ``work``."""
    from geodistill.models.loading import local_model_dir

    path = Path(source).expanduser()
    if source not in EMBEDDED and _is_run(path):
        return run_student_dir(path), path
    if source not in EMBEDDED and path.is_dir():
        return local_model_dir(path), None
    from geodistill.models import load_whisper

    model, processor = load_whisper(source, device="cpu")
    model.save_pretrained(work)
    processor.save_pretrained(work)
    return work, None


def _write_hf(model_dir: Path, out: Path) -> None:
    """Re-save the model (safetensors), its generation config and its processor into ``out``."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    model = WhisperForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    model.save_pretrained(out)
    processor = WhisperProcessor.from_pretrained(model_dir, local_files_only=True)
    processor.save_pretrained(out)
    # transformers 5 folds the feature extractor into processor_config.json; faster-whisper (and older
    # transformers) read preprocessor_config.json
    processor.feature_extractor.save_pretrained(out)


def export(
    source: str | Path,
    fmt: str,
    out: str | Path,
    quantization: str | None = None,
    eval_json: str | Path | None = None,
    license: str = "mit",
) -> Path:
    """Export ``source`` (run folder or model spec) to ``out`` in ``fmt`` ("hf" or "ct2"); returns ``out``.

    ``quantization`` (ct2 only) defaults to float32, the exact weights. ``eval_json`` overrides the
    evaluation the model card quotes (default: ``RUN/eval.json`` or ``RUN/*/eval.json``).
    """
    _check_choices(fmt, quantization)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise GeodistillError(f"--out {out}: folder exists and is not empty")
    if is_ctc_spec(source):
        from geodistill.export_ctc import export_ctc

        if fmt == "ct2":
            raise GeodistillError(
                f"--format ct2: {source} is a CTC student, and CTranslate2 has no such model (no CTC "
                "encoder-only model type); use --format hf"
            )
        path = Path(source).expanduser()
        run_dir = path if _is_run(path) else None
        return export_ctc(path, out, find_eval(run_dir, eval_json), training_record(run_dir), license)
    if fmt == "ct2":
        require("ctranslate2", "deploy", "exporting to CTranslate2")
    with tempfile.TemporaryDirectory(prefix="geodistill-export-") as tmp:
        model_dir, run_dir = resolve_source(str(source), Path(tmp) / "source")
        hf_dir = out if fmt == "hf" else Path(tmp) / "hf"
        hf_dir.mkdir(parents=True, exist_ok=True)
        _write_hf(model_dir, hf_dir)
        evaluation = find_eval(run_dir, eval_json)
        card = model_card(hf_dir, str(source), run_dir, evaluation, license, fmt)
        if fmt == "ct2":
            convert_to_ct2(hf_dir, out, quantization or "float32")
        (out / "README.md").write_text(card, encoding="utf-8")
    return out


def convert_to_ct2(hf_dir: Path, out: Path, quantization: str = "float32") -> Path:
    """CTranslate2 model of the HF Whisper folder ``hf_dir`` in ``out`` (the library's converter)."""
    converters = require("ctranslate2.converters", "deploy", "exporting to CTranslate2", "ctranslate2")
    copy = [f for f in CT2_COPY_FILES if (hf_dir / f).is_file()]
    converter = converters.TransformersConverter(str(hf_dir), copy_files=copy, low_cpu_mem_usage=True)
    converter.convert(str(out), quantization=quantization, force=True)
    _record_context(hf_dir, out)
    if not (out / "preprocessor_config.json").is_file():  # transformers 5 folders hold processor_config.json
        from transformers import WhisperProcessor

        WhisperProcessor.from_pretrained(hf_dir, local_files_only=True).feature_extractor.save_pretrained(out)
    return out


def _record_context(hf_dir: Path, out: Path) -> None:
    """Copy a dynamic-context student's rule (config.json ``geodistill_audio_context`` / ``_context_margin``,
    which CTranslate2's config.json drops) into ``out/geodistill_context.json``."""
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    rule = {k: v for k, v in config.items() if k in CONTEXT_KEYS}
    if rule.get("geodistill_audio_context", "full") != "full":
        (out / CONTEXT_FILE).write_text(json.dumps(rule, indent=2) + "\n", encoding="utf-8")


def find_eval(run_dir: Path | None, eval_json: str | Path | None) -> dict | None:
    """The evaluation the card quotes: ``eval_json`` if given, else the run's newest eval.json, else None."""
    if eval_json is not None:
        path = Path(eval_json)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GeodistillError(f"--eval {path}: unreadable eval.json ({exc})") from exc
    if run_dir is None:
        return None
    found = [p for p in [run_dir / "eval.json", *run_dir.glob("*/eval.json")] if p.is_file()]
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
    return None


def evaluation_lines(evaluation: dict | None) -> list[str]:
    """The card's "Evaluation" section (none without an evaluation)."""
    if not evaluation or "wer" not in evaluation:
        return []
    return [
        "## Evaluation",
        "",
        f"WER {100 * evaluation['wer']:.2f} % (normalised), "
        f"RTF {evaluation.get('rtf', float('nan')):.4f} "
        f"on `{evaluation.get('data')}` ({evaluation.get('n_utterances')} utterances, "
        f"{evaluation.get('device')}, batch {evaluation.get('batch_size')}), measured by "
        "`geodistill evaluate`.",
        "",
    ]


def training_record(run_dir: Path | None) -> dict:
    if run_dir is None or not (run_dir / "training_config.json").is_file():
        return {}
    try:
        return json.loads((run_dir / "training_config.json").read_text(encoding="utf-8")).get("config", {})
    except ValueError:
        return {}


def _hub_id(spec: str | None) -> str | None:
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
    base = _hub_id(cfg.get("teacher"))
    if base:
        meta["base_model"] = base
    if evaluation and "wer" in evaluation:
        metrics = [{"type": "wer", "value": round(100 * evaluation["wer"], 2), "name": "WER (normalised, %)"}]
        if "rtf" in evaluation:
            metrics.append({"type": "rtf", "value": round(evaluation["rtf"], 4), "name": "real-time factor"})
        data = str(evaluation.get("data", "evaluation set"))
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


def _distillation_lines(cfg: dict, config: dict) -> list[str]:
    if not cfg:
        return ["Exported with geodistill (no training record found next to the model)."]
    student, loss = cfg.get("student", {}), cfg.get("loss", {})
    train, data = cfg.get("train", {}), cfg.get("data", {})
    return [
        f"- teacher: `{cfg.get('teacher')}`",
        f"- student: init `{student.get('init')}`, encoder layers {config.get('encoder_layers')}, decoder "
        f"layers {config.get('decoder_layers')} (config: encoder {student.get('encoder_layers')}, decoder "
        f"{student.get('decoder_layers')}), d_model {config.get('d_model')}, LoRA rank "
        f"{student.get('lora', {}).get('r')} (merged)",
        f"- losses: cross-entropy x {loss.get('ce_weight')}, KL(teacher||student) x {loss.get('kl_weight')} "
        f"at T={loss.get('temperature')}, {loss.get('hidden_loss')} hidden-state loss on "
        f"{loss.get('hidden_on')} x {loss.get('geo_weight')}, TAID {loss.get('taid')}",
        f"- steps: {train.get('max_steps')} (batch {train.get('batch_size')} x accumulation "
        f"{train.get('grad_accum')}, lr {train.get('lr')})",
        f"- data: train `{data.get('train')}`, validation `{data.get('val')}`",
    ]


def model_card(
    hf_dir: Path,
    source: str,
    run_dir: Path | None,
    evaluation: dict | None,
    license: str = "mit",
    fmt: str = "hf",
) -> str:
    """README.md text: Hub YAML front matter, evaluation, how the model was distilled, how to load it."""
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    cfg = training_record(run_dir)
    name = Path(source).name or str(source)
    meta = front_matter(config.get("vocab_size", 51864) > 51864, name, cfg, evaluation, license)
    if fmt == "ct2":  # the Hub lists CTranslate2 Whisper models under ctranslate2 + faster-whisper
        meta["library_name"] = "ctranslate2"
        meta["tags"] += ["ctranslate2", "faster-whisper"]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {name}", ""]
    lines += [f"A Whisper student distilled with geodistill from `{cfg.get('teacher', source)}`.", ""]
    lines += evaluation_lines(evaluation)
    lines += ["## How it was distilled", "", *_distillation_lines(cfg, config), ""]
    lines += [
        "## How to use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        'asr = pipeline("automatic-speech-recognition", model="PATH_OR_HUB_ID")',
        'print(asr("speech.wav")["text"])',
        "```",
        "",
        "The CTranslate2 export (`geodistill export RUN --format ct2`) loads in faster-whisper:",
        "",
        "```python",
        "from faster_whisper import WhisperModel",
        "",
        'segments, info = WhisperModel("PATH", compute_type="int8").transcribe("speech.wav")',
        "```",
        "",
    ]
    return "\n".join(lines)
