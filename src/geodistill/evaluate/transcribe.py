"""``geodistill transcribe``: text of audio files, by any model's student family (a plain Whisper model is
the ``seq2seq`` family's), with the decoding options of ``geodistill.decoding.options.DecodeOptions``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from geodistill.data import load_audio
from geodistill.data.audio import probe
from geodistill.decoding.options import DecodeOptions
from geodistill.decoding.segments import Transcript
from geodistill.decoding.whisper import CHUNK_SECONDS, SAMPLE_RATE, WHISPER_WINDOW
from geodistill.errors import DataError
from geodistill.students import family_of


def load_model(
    model,
    device: str | torch.device = "auto",
    engine: str = "hf",
    assistant: str | None = None,
    dtype: str = "auto",
) -> tuple:
    """(model, processor, device) from a spec (loaded in eval mode on ``device``) or a loaded pair.

    A loaded (model, processor) pair is used where it already is (the training loop evaluates its student
    in place), so ``device`` only applies to specs. ``engine``, ``assistant``, ``dtype``: see
    ``DecodeOptions``; the model's family (``geodistill.students.family_of``) refuses the ones it cannot
    honour.
    """
    family = family_of(model)
    options = family.check(DecodeOptions(engine=engine, assistant=assistant, dtype=dtype))
    return family.load(model, str(device), options)


def _read(path: str | Path) -> np.ndarray:
    """16 kHz mono audio of ``path`` (any length; ``_window`` refuses what short-form cannot take)."""

    try:
        audio = load_audio(path)
    except DataError:
        raise
    except Exception as e:  # soundfile/soxr raise several types; the user needs one line naming the file
        raise DataError(f"{path}: cannot read audio ({type(e).__name__}: {e})") from e
    return audio


def _window(path: str | Path, audio: np.ndarray, long_form: bool, window: str = WHISPER_WINDOW) -> np.ndarray:
    """``audio``, refused with a DataError ("longer than ``window``") when it is over 30 s and ``long_form``
    is off."""
    if not long_form and len(audio) > CHUNK_SECONDS * SAMPLE_RATE:
        raise DataError(f"{path}: {len(audio) / SAMPLE_RATE:.1f} s is longer than {window}; split it first")
    return audio


def _check(path: str | Path, long_form: bool = False, window: str = WHISPER_WINDOW) -> None:
    """Fail before the model loads on a missing, empty, corrupt or over-long file (header read only)."""

    seconds = probe(path)
    if not long_form and seconds > CHUNK_SECONDS:
        raise DataError(f"{path}: {seconds:.1f} s is longer than {window}; split it first")


def _batches(
    model_spec, paths: Sequence[str | Path], device: str, timed: bool, options: dict
) -> Iterator[tuple[list[str | Path], list]]:
    """(paths, results) one batch at a time: ``family.texts``' strings, or ``family.transcripts``' timed
    Transcripts when ``timed``; every file's header is checked before the model loads."""
    family = family_of(model_spec)
    opts = family.check(DecodeOptions(**options))
    for p in paths:
        _check(p, opts.long_form or opts.vad, family.window)
    model, processor, _ = family.load(model_spec, device, opts)
    name = model_spec if isinstance(model_spec, str | Path) else "the model"
    decode = (
        family.transcripts(model, processor, opts, str(name))
        if timed
        else family.texts(model, processor, opts)
    )
    for i in range(0, len(paths), opts.batch_size):
        batch = list(paths[i : i + opts.batch_size])
        audios = [_window(p, _read(p), opts.long_form or opts.vad, family.window) for p in batch]
        yield batch, decode(audios, batch)


def iter_transcripts(
    model_spec, paths: Sequence[str | Path], device: str = "auto", **options
) -> Iterator[tuple[str | Path, str]]:
    """(path, transcript) of each audio file, in order, decoded ``batch_size`` files at a time.

    ``options``: ``DecodeOptions`` fields (language, beam_size, batch_size, audio_context, context_margin,
    engine, assistant, long_form, fallback, vad; ``fallback`` None: the model's own safeguard). Every file's
    header is checked before the model loads, so an unreadable file fails fast with a DataError naming it;
    the audio itself is decoded one batch at a time, so memory does not grow with the number of files.
    The model's family refuses options it cannot honour (a CTC student: Whisper's) in one line.
    """
    for batch, texts in _batches(model_spec, paths, device, False, options):
        yield from zip(batch, texts, strict=True)


def iter_timed(
    model_spec, paths: Sequence[str | Path], device: str = "auto", **options
) -> Iterator[tuple[str | Path, Transcript]]:
    """(path, timed Transcript) of each audio file, in order, as ``iter_transcripts`` decodes them: segment
    start/end times in seconds of the file (``geodistill.decoding.timed``), word times with
    ``word_timestamps=True`` (refused in one line where the engine or model cannot give them), speech only
    with ``vad=True`` (which also lets files over 30 s through on engines without long-form decoding)."""
    for batch, found in _batches(model_spec, paths, device, True, options):
        yield from zip(batch, found, strict=True)


def transcribe_files(model_spec, paths: Sequence[str | Path], **options) -> list[str]:
    """Transcripts of audio files (any format soundfile reads; resampled to 16 kHz mono), in order.

    ``model_spec`` is anything ``geodistill.models.load_whisper`` accepts, a saved student, or a loaded
    (model, processor); ``options`` are ``iter_transcripts``' keywords.
    """
    return [text for _, text in iter_transcripts(model_spec, paths, **options)]
