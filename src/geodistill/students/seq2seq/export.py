"""Export of a Whisper student: a plain Hugging Face folder (``hf``), a CTranslate2 model (``ct2``) or ONNX
graphs (``onnx``).

- ``hf``: ``model.safetensors`` (adapters already merged by the run), ``config.json``,
  ``generation_config.json``, the processor files and a ``README.md`` model card with the Hub's YAML
  front matter (WER/RTF from the run's own ``eval.json`` when there is one). Loading it needs
  transformers only.
- ``ct2``: CTranslate2's own ``TransformersConverter`` over that HF folder
  (``geodistill.models.ct2_convert``), plus the ``tokenizer.json`` and ``preprocessor_config.json``
  faster-whisper reads; loads in ``faster_whisper.WhisperModel(DIR)``.
- ``ggml``: whisper.cpp's model file ``ggml-model.bin`` (``geodistill.models.ggml``, f16 or q8_0) with the
  tokenizer and, for a dynamic-context student, ``geodistill_context.json``; loads in whisper.cpp and
  pywhispercpp.
- ``onnx``: ``encoder.onnx`` (any even frame count up to 3000), ``decoder.onnx`` and
  ``decoder_with_past.onnx`` (``geodistill.models.onnx``), fp32, with the config, generation config and
  processor files; runs in ONNX Runtime (``--engine onnx``). Written atomically (temp folder, then rename).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from transformers import WhisperForConditionalGeneration, WhisperProcessor

from geodistill.errors import ModelLoadError
from geodistill.models.ct2_convert import convert_to_ct2
from geodistill.models.ggml import write_ggml_folder
from geodistill.models.loading import folder_reason, local_model_dir, weights_errors
from geodistill.models.onnx import export_onnx
from geodistill.models.trim import read_kept, save_kept
from geodistill.optional import require
from geodistill.students.family import Card
from geodistill.students.seq2seq.card import model_card

FORMATS: tuple[str, ...] = ("hf", "ct2", "ggml", "onnx")


def export(folder: Path, out: Path, fmt: str, quantization: str | None, card: Card) -> None:
    """Write the Whisper model in ``folder`` (an HF or CTranslate2 folder) to ``out`` as ``fmt``."""
    if fmt == "ct2":
        require("ctranslate2", "deploy", "exporting to CTranslate2")
    if fmt == "onnx":
        require("onnx", "onnx", "exporting to ONNX")
    model_dir = local_model_dir(folder)
    with tempfile.TemporaryDirectory(prefix="geodistill-export-") as tmp:
        hf_dir = out if fmt == "hf" else Path(tmp) / "hf"
        hf_dir.mkdir(parents=True, exist_ok=True)
        write_hf(model_dir, hf_dir)
        text = model_card(hf_dir, card, fmt)
        if fmt == "onnx":  # the graphs and the card land together (temp folder, then rename)
            export_onnx(hf_dir, out, readme=text)
            return
        if fmt == "ct2":
            convert_to_ct2(hf_dir, out, quantization or "float32")
        elif fmt == "ggml":  # whisper.cpp: f16 by default, q8_0 quantised
            write_ggml_folder(hf_dir, out, quantization or "f16")
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
    kept = read_kept(model_dir)
    if kept is not None:  # student.vocab: trimmed: its kept ids, every other id suppressed
        save_kept(out, kept, int(model.config.vocab_size))
    processor = WhisperProcessor.from_pretrained(model_dir, local_files_only=True)
    processor.save_pretrained(out)
    # transformers 5 folds the feature extractor into processor_config.json; faster-whisper (and older
    # transformers) read preprocessor_config.json
    processor.feature_extractor.save_pretrained(out)
