"""Write an HF Whisper folder as a CTranslate2 model (CTranslate2's own converter), for ``export --format
ct2`` and ``--engine ct2``. CTranslate2 drops unknown config keys, so a dynamic-context student's rule is
kept next to model.bin in ``geodistill_context.json``."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import WhisperProcessor

from geodistill.errors import ModelLoadError
from geodistill.optional import require

# what faster-whisper reads next to model.bin (preprocessor_config.json gives it the mel-bin count)
CT2_COPY_FILES = ("tokenizer.json", "preprocessor_config.json")
# a dynamic-context student's rule (geodistill.models.context), kept next to a CTranslate2 export
CONTEXT_KEYS = ("geodistill_audio_context", "geodistill_context_margin")
CONTEXT_FILE = "geodistill_context.json"


def convert_to_ct2(hf_dir: Path, out: Path, quantization: str = "float32") -> Path:
    """CTranslate2 model of the HF Whisper folder ``hf_dir`` in ``out`` (the library's converter)."""
    converters = require("ctranslate2.converters", "deploy", "exporting to CTranslate2", "ctranslate2")
    copy = [f for f in CT2_COPY_FILES if (hf_dir / f).is_file()]
    converter = converters.TransformersConverter(str(hf_dir), copy_files=copy, low_cpu_mem_usage=True)
    converter.convert(str(out), quantization=quantization, force=True)
    record_context(hf_dir, out)
    if not (out / "preprocessor_config.json").is_file():  # transformers 5 folders hold processor_config.json
        WhisperProcessor.from_pretrained(hf_dir, local_files_only=True).feature_extractor.save_pretrained(out)
    return out


def record_context(hf_dir: Path, out: Path) -> None:
    """Copy a dynamic-context student's rule (config.json ``geodistill_audio_context`` / ``_context_margin``,
    which CTranslate2's config.json drops) into ``out/geodistill_context.json``."""
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    rule = {k: v for k, v in config.items() if k in CONTEXT_KEYS}
    if rule.get("geodistill_audio_context", "full") != "full":
        (out / CONTEXT_FILE).write_text(json.dumps(rule, indent=2) + "\n", encoding="utf-8")


def read_context_rule(folder: Path) -> dict:
    """The dynamic-context rule an export keeps in ``geodistill_context.json`` ({} for full context)."""
    path = folder / CONTEXT_FILE
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{path}: unreadable context rule ({exc})") from exc
