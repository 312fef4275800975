"""The Python API: ``from geodistill import transcribe, evaluate, distil, export, load``.

Five thin functions over what the commands run, with the commands' defaults, so a notebook and
``geodistill ...`` give the same results; each keyword maps onto the command's flag of the same name
(``batch_size`` is ``--batch-size``). A *model* is anything ``geodistill transcribe`` takes (an embedded
name such as ``tiny.en``, a Hugging Face id or folder, a CTranslate2 folder, a run folder, a CTC student)
or a ``(model, processor)`` pair that ``load`` returned; *data* is any data spec (a folder, a JSONL
manifest, ``librispeech:``/``hf:`` specs; docs/data.md). Errors are the commands' one-line errors, raised
as ``geodistill.errors.GeodistillError`` or ``geodistill.config.ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from geodistill.config import load_config
from geodistill.evaluate.run import evaluate as _evaluate
from geodistill.evaluate.transcribe import load_model, transcribe_files
from geodistill.export import export as _export
from geodistill.train.loop import TrainResult, train

Model = str | Path | tuple[Any, Any]  # a model spec, or a (model, processor) pair from ``load``
Audio = str | Path


@overload
def transcribe(model: Model, audio: Audio, *, device: str = ..., **options: Any) -> str: ...
@overload
def transcribe(model: Model, audio: Sequence[Audio], *, device: str = ..., **options: Any) -> list[str]: ...
def transcribe(model: Model, audio: Audio | Sequence[Audio], *, device: str = "auto", **options: Any):
    """The transcript of one audio file (a str), or of each of several (a list, in order).

    Files of any length and any format soundfile reads (resampled to 16 kHz mono); long ones are decoded
    window by window. ``options``: the decoding options of ``geodistill transcribe`` (language, beam_size,
    batch_size, engine, assistant, audio_context, context_margin, fallback: None, the default, is the
    model's own safeguard; ``long_form_mode="chunked"`` is ``--long-form chunked``: files over 30 s in 30-s
    windows decoded ``batch_size`` at a time; ``geodistill.decoding.options.DecodeOptions``).
    """
    options = {"long_form": True, "fallback": None, **options}
    if isinstance(audio, str | Path):
        return transcribe_files(model, [audio], device=device, **options)[0]
    return transcribe_files(model, list(audio), device=device, **options)


def evaluate(
    model: Model,
    data: str | Path,
    out: str | Path | None = None,
    *,
    limit: int | None = None,
    device: str = "auto",
    strict: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """WER, CER, real-time factor and peak memory of ``model`` on ``data``: the eval.json dict.

    ``out`` (a folder) also gets eval.json, eval.md and utterances.jsonl, as ``geodistill evaluate --out``
    writes them. ``limit`` scores the first N usable utterances; ``strict`` stops at the first bad one.
    ``options``: the decoding options (batch_size, language, beam_size, engine, assistant, audio_context,
    context_margin, fallback, warmup, long_form_mode); clips over 30 s are decoded long-form, as by the
    command.
    """
    options = {"long_form": True, "warmup": True, **options}
    return _evaluate(model, data, out=out, limit=limit, device=device, strict=strict, **options)


def distil(
    config: str | Path | Mapping[str, Any],
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
) -> TrainResult:
    """Distil a teacher into a student, as ``geodistill train``: returns the run's ``TrainResult``
    (``run_dir``, ``step``, ``best_wer``, ``history``).

    ``config``: a shipped preset's name (``"dynamic-cpu"``; ``geodistill presets`` lists them), a YAML
    file, or a mapping shaped like one. ``overrides``: dotted keys, either ``{"train.max_steps": 50}`` or
    ``["train.max_steps=50"]`` (docs/training.md). The whole config is checked before anything runs; a
    rerun with the same ``run_dir`` resumes from its checkpoint.
    """
    return train(load_config(config, overrides))


def export(
    source: str | Path,
    format: str,
    out: str | Path,
    *,
    quantization: str | None = None,
    eval_json: str | Path | None = None,
    license: str = "mit",
    name: str | None = None,
) -> Path:
    """Ship a run's student (or any model spec) as ``format`` into the new folder ``out``; returns ``out``.

    ``format``: hf (transformers, with a model card), ct2 (CTranslate2 / faster-whisper), ggml
    (whisper.cpp) or onnx (ONNX Runtime); ``quantization`` for ct2 (int8, ...) and ggml (q8_0).
    """
    return _export(
        source, format, out, quantization=quantization, eval_json=eval_json, license=license, name=name
    )


def load(model: str | Path, device: str = "auto") -> tuple[Any, Any]:
    """``(model, processor)`` of a model spec, in eval mode on ``device`` (auto: CUDA when there is one).

    A Whisper model is a transformers ``WhisperForConditionalGeneration`` with its ``WhisperProcessor``; a
    CTC student is its own torch module. Hand the pair to ``transcribe`` or ``evaluate`` to decode with it
    without loading it again.
    """
    loaded, processor, _ = load_model(model, device)
    return loaded, processor
