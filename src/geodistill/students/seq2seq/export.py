"""Export of a Whisper student: a plain Hugging Face folder (``hf``) or a CTranslate2 model (``ct2``).

- ``hf``: ``model.safetensors`` (adapters already merged by the run), ``config.json``,
  ``generation_config.json``, the processor files and a ``README.md`` model card with the Hub's YAML
  front matter (WER/RTF from the run's own ``eval.json`` when there is one). Loading it needs
  transformers only.
- ``ct2``: CTranslate2's own ``TransformersConverter`` over that HF folder
  (``geodistill.models.ct2_convert``), plus the ``tokenizer.json`` and ``preprocessor_config.json``
  faster-whisper reads; loads in ``faster_whisper.WhisperModel(DIR)``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from geodistill.errors import ModelLoadError
from geodistill.modelcard import evaluation_lines, front_matter
from geodistill.models.ct2_convert import convert_to_ct2
from geodistill.models.loading import folder_reason, local_model_dir, weights_errors
from geodistill.optional import require
from geodistill.students.family import Card

FORMATS: tuple[str, ...] = ("hf", "ct2")


def export(folder: Path, out: Path, fmt: str, quantization: str | None, card: Card) -> None:
    """Write the Whisper model in ``folder`` (an HF or CTranslate2 folder) to ``out`` as ``fmt``."""
    if fmt == "ct2":
        require("ctranslate2", "deploy", "exporting to CTranslate2")
    model_dir = local_model_dir(folder)
    with tempfile.TemporaryDirectory(prefix="geodistill-export-") as tmp:
        hf_dir = out if fmt == "hf" else Path(tmp) / "hf"
        hf_dir.mkdir(parents=True, exist_ok=True)
        write_hf(model_dir, hf_dir)
        text = model_card(hf_dir, card, fmt)
        if fmt == "ct2":
            convert_to_ct2(hf_dir, out, quantization or "float32")
        (out / "README.md").write_text(text, encoding="utf-8")


def write_hf(model_dir: Path, out: Path) -> None:
    """Re-save the model (safetensors), its generation config and its processor into ``out``.

    Weights that do not load (cut short, or shaped otherwise than config.json says) are one ModelLoadError
    naming the folder, the key and the reason."""

    try:
        model = WhisperForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    except weights_errors() as exc:
        raise ModelLoadError(
            f"could not export '{model_dir}': not a loadable HF Whisper ({folder_reason(model_dir, exc)})"
        ) from exc
    model.save_pretrained(out)
    processor = WhisperProcessor.from_pretrained(model_dir, local_files_only=True)
    processor.save_pretrained(out)
    # transformers 5 folds the feature extractor into processor_config.json; faster-whisper (and older
    # transformers) read preprocessor_config.json
    processor.feature_extractor.save_pretrained(out)


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


def model_card(hf_dir: Path, card: Card, fmt: str = "hf") -> str:
    """README.md text: Hub YAML front matter, evaluation, how the model was distilled, how to load it."""
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    cfg, evaluation, name, source = card.cfg, card.evaluation, card.name, card.source
    meta = front_matter(config.get("vocab_size", 51864) > 51864, name, cfg, evaluation, card.license)
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
