"""Write an HF Whisper folder as a CTranslate2 model (CTranslate2's own converter), for ``export --format
ct2`` and ``--engine ct2``. CTranslate2 drops unknown config keys, so a dynamic-context student's rule is
kept next to model.bin in ``geodistill_context.json``.

A trimmed-vocabulary student (``vocab_kept.json``, ``geodistill.models.trim``) becomes a really smaller
model: its K kept token strings in vocabulary.json (in kept order), K embedding and projection rows, and
config.json's suppress_ids / suppress_ids_begin / lang_ids at their new indices (dropped ids left out).
Every decoding step then runs over K rows, not 51,864. Its ``tokenizer.json`` is re-indexed to match
(``trimmed_tokenizer``), so faster-whisper decodes the new ids, and ``vocab_kept.json`` beside maps a new
index back to Whisper's id (``kept[index]``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from transformers import WhisperProcessor

from geodistill.errors import ModelLoadError
from geodistill.models.trim import KEPT_FILE, read_kept
from geodistill.optional import require

# what faster-whisper reads next to model.bin (preprocessor_config.json gives it the mel-bin count)
CT2_COPY_FILES = ("tokenizer.json", "preprocessor_config.json")
# a dynamic-context student's rule (geodistill.models.context), kept next to a CTranslate2 export
CONTEXT_KEYS = ("geodistill_audio_context", "geodistill_context_margin")
CONTEXT_FILE = "geodistill_context.json"
ENGLISH_VOCAB = 51864  # CTranslate2 takes a Whisper with a smaller vocabulary than 51,865 for English-only


def convert_to_ct2(hf_dir: Path, out: Path, quantization: str = "float32") -> Path:
    """CTranslate2 model of the HF Whisper folder ``hf_dir`` in ``out`` (the library's converter)."""
    converters = require("ctranslate2.converters", "deploy", "exporting to CTranslate2", "ctranslate2")
    copy = [f for f in CT2_COPY_FILES if (hf_dir / f).is_file()]
    kept = read_kept(hf_dir)
    if kept is not None and json.loads((hf_dir / "config.json").read_text())["vocab_size"] > ENGLISH_VOCAB:
        raise ModelLoadError(
            f"{hf_dir}: student.vocab: trimmed: CTranslate2 takes a vocabulary under 51,865 tokens for an "
            "English-only Whisper (no language tokens), so a trimmed multilingual student exports as hf only"
        )
    converter = _converter(converters.TransformersConverter, kept)(
        str(hf_dir), copy_files=copy, low_cpu_mem_usage=True
    )
    converter.convert(str(out), quantization=quantization, force=True)
    record_context(hf_dir, out)
    if kept is not None:
        shutil.copyfile(hf_dir / KEPT_FILE, out / KEPT_FILE)
        tokenizer = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
        text = json.dumps(trimmed_tokenizer(tokenizer, kept), ensure_ascii=False)
        (out / "tokenizer.json").write_text(text, encoding="utf-8")
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


def _converter(base: type, kept: list[int] | None) -> type:
    """CTranslate2's ``TransformersConverter`` (``base``), or one over the ``kept`` ids only (trim_spec)."""
    if kept is None:
        return base

    class TrimmedConverter(base):  # type: ignore[valid-type,misc]  (base is the optional extra's class)
        def _load(self):
            return trim_spec(super()._load(), kept)

    return TrimmedConverter


def trim_spec(spec: Any, kept: list[int]) -> Any:
    """A converted CTranslate2 ``WhisperSpec`` cut to the ``kept`` ids: vocabulary, the tied embedding and
    projection rows (one tensor, stored once), and the config's id lists at their new indices."""
    rows = spec.decoder.embeddings.weight[kept].contiguous()
    spec.decoder.embeddings.weight = rows
    spec.decoder.projection.weight = rows
    spec.register_vocabulary([spec._vocabulary[i] for i in kept])
    new = {old: n for n, old in enumerate(kept)}
    config = spec.config
    for name in ("suppress_ids", "suppress_ids_begin", "lang_ids"):
        ids = getattr(config, name, None)
        if ids is not None:
            setattr(config, name, [new[i] for i in ids if i in new])
    return spec


def trimmed_tokenizer(tokenizer: dict, kept: list[int]) -> dict:
    """A tokenizer.json (ByteLevel BPE) re-indexed to the ``kept`` ids: token ``kept[n]`` gets id n, the
    others are gone; merges stay where both parts and their result are kept (every text still encodes, in
    kept tokens: the 256 byte tokens are kept); added and post-processor special tokens re-indexed."""
    new = {old: n for n, old in enumerate(kept)}
    out = json.loads(json.dumps(tokenizer))
    model = out["model"]
    vocab = {tok: new[i] for tok, i in model["vocab"].items() if i in new}
    model["vocab"] = vocab

    def merged(merge: str | list[str]) -> bool:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        return left in vocab and right in vocab and left + right in vocab

    model["merges"] = [m for m in model["merges"] if merged(m)]
    out["added_tokens"] = [dict(t, id=new[t["id"]]) for t in out.get("added_tokens", []) if t["id"] in new]
    post = out.get("post_processor") or {}
    for special in (post.get("special_tokens") or {}).values():
        special["ids"] = [new[i] for i in special["ids"] if i in new]
    return out
