"""Batched Whisper transcription: log-Mel features in, text out.

Decoding is ``model.generate`` with the KV cache on (each step attends to cached keys/values instead of
re-running the decoder over the whole prefix: O(n) work per step rather than O(n^2) overall), greedy for
``beam_size=1`` and beam search above. In transformers 5, Whisper's ``generate`` returns the generated
text tokens only (the ``<|startoftranscript|>`` prompt is stripped), so decoding needs no prompt slicing.

Audio context (``geodistill.models.context``): features are 3000 frames (30 s) at ``full`` context; at
``dynamic`` context they are padded to the batch's longest clip + margin, and ``generate_ids`` runs the
encoder over those frames itself and hands ``generate`` the ``encoder_outputs`` (the decoder cross-attends
to however many positions it is given). Clips are decoded longest first so each batch's padding stays small.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from geodistill.errors import DataError
from geodistill.models.context import (
    HOP,
    MEL_FRAMES,
    AudioContext,
    check_override,
    clip_frames,
    dynamic_frames,
    encode,
    resolve_audio_context,
)

SAMPLE_RATE = 16000  # Hz, Whisper's input rate
CHUNK_SECONDS = 30  # Whisper's window; longer audio would be silently truncated by the feature extractor
WHISPER_WINDOW = f"Whisper's {CHUNK_SECONDS} s window"  # what a clip over 30 s is "longer than"

# Whisper vocabularies: 51864 tokens for English-only checkpoints, 51865 (51866 for large-v3) multilingual
ENGLISH_ONLY_VOCAB = 51864

log = logging.getLogger("geodistill")


def is_multilingual(model) -> bool:
    """Whether ``model`` takes language/task tokens (its generation config says so, else its vocabulary)."""
    flag = getattr(model.generation_config, "is_multilingual", None)
    return bool(flag) if flag is not None else model.config.vocab_size > ENGLISH_ONLY_VOCAB


def default_max_new_tokens(model) -> int:
    """Half the decoder context (224 for Whisper), openai/whisper's ``sample_len``.

    30 s of speech is ~100 tokens, so real transcripts fit; a looping (e.g. half-trained) model stops here
    instead of at the full 448-token context, which halves the worst-case cost of an evaluation.
    """
    return model.config.max_target_positions // 2


@torch.inference_mode()
@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


def generate_ids(
    model,
    input_features: torch.Tensor,
    language: str | None = None,
    beam_size: int = 1,
    max_new_tokens: int | None = None,
    fallback: bool = False,
) -> torch.Tensor:
    """Token ids (B, T) of the transcripts of ``input_features`` (B, n_mels, F), prompt excluded.

    F = 3000 is Whisper's own path; a shorter F (dynamic audio context) runs ``context.encode`` first.

    ``language`` (e.g. "en") and task "transcribe" go to multilingual models only; English-only models
    reject them. A multilingual model given no language detects it per utterance. ``max_new_tokens`` None
    means ``default_max_new_tokens(model)``.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if max_new_tokens is None:
        max_new_tokens = default_max_new_tokens(model)
    kwargs: dict = {
        "num_beams": beam_size,
        "do_sample": False,
        "use_cache": True,
        "max_new_tokens": max_new_tokens,
    }
    if is_multilingual(model):
        kwargs.update(task="transcribe", language=language)
    feats = input_features.to(device=model.device, dtype=model.dtype)
    short = feats.shape[-1] != MEL_FRAMES and hasattr(model, "get_encoder")
    if fallback and short:  # transformers' fallback path re-reads 30-s input_features: greedy here
        _warn_once("temperature fallback is not applied at dynamic audio context (greedy decoding)")
    elif fallback:  # Whisper's temperature fallback (geodistill.evaluate.longform)
        from geodistill.evaluate.longform import fallback_kwargs

        kwargs.update(fallback_kwargs())
    if not short:  # 30 s, or CTranslate2 (which takes short input itself)
        return model.generate(feats, **kwargs)
    return model.generate(encoder_outputs=encode(model.get_encoder(), feats), **kwargs)


def transcribe_batch(
    model,
    processor,
    input_features: torch.Tensor,
    language: str | None = None,
    beam_size: int = 1,
    max_new_tokens: int | None = None,
) -> list[str]:
    """B stripped transcripts of ``input_features`` (B, n_mels, F); see ``generate_ids``."""
    ids = generate_ids(model, input_features, language, beam_size, max_new_tokens)
    return [t.strip() for t in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def batch_frames(
    audios: Sequence[np.ndarray], context: AudioContext | None, names: Sequence | None = None
) -> int:
    """Mel frames a batch is padded to: 3000 at full context, else its longest clip's dynamic context.

    Dynamic: a clip over 30 s raises a GeodistillError naming it (``names[i]``, else "clip i").
    """
    if context is None or not context.dynamic:
        return MEL_FRAMES
    names = names or [f"clip {i}" for i in range(len(audios))]
    return max(
        dynamic_frames(clip_frames(len(a)), context.margin, str(n))
        for a, n in zip(audios, names, strict=True)
    )


def features(
    processor,
    audios: Sequence[np.ndarray],
    context: AudioContext | None = None,
    names: Sequence | None = None,
) -> torch.Tensor:
    """Log-Mel features (B, n_mels, F) of 16 kHz mono float32 clips, F from ``batch_frames``.

    The feature extractor normalises by the maximum over the padded window; the padding is the log-Mel of
    zeros, below any clip's maximum, so a clip's features padded to F frames equal the first F frames of its
    30-s features (tests/evaluate/test_context.py checks it bit for bit).
    """
    frames = batch_frames(audios, context, names)
    return processor.feature_extractor(
        list(audios), sampling_rate=SAMPLE_RATE, max_length=frames * HOP, return_tensors="pt"
    ).input_features


def longest_first(lengths: Sequence[float]) -> list[int]:
    """Indices ordered longest first (ties keep input order): batches of similar length pad less."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def load_model(
    model, device: str | torch.device = "auto", engine: str = "hf", assistant: str | None = None
) -> tuple:
    """(model, processor, device) from a spec (loaded in eval mode on ``device``) or a loaded pair.

    A loaded (model, processor) pair is used where it already is (the training loop evaluates its student
    in place), so ``device`` only applies to specs. ``engine`` "ct2" loads a CTranslate2 model with the same
    generate interface (see geodistill.evaluate.engines); ``assistant`` (a student spec) makes the teacher
    draft with it (speculative decoding, see geodistill.evaluate.assistant). A saved CTC student (its
    folder, run folder or export) loads with ``geodistill.students.ctc.load_ctc``; it takes neither option.
    """
    from geodistill.evaluate import ctc

    family_ctc = ctc.is_ctc(model)
    if family_ctc:
        ctc.check_options(engine, assistant)
    if engine != "hf" or assistant is not None:
        from geodistill.evaluate.engines import load_engine

        return load_engine(model, str(device), engine, assistant=assistant)
    if isinstance(model, tuple | list):
        loaded, processor = model
        return loaded, processor, loaded.device
    if family_ctc:
        from geodistill.students.ctc import load_ctc

        loaded, processor = load_ctc(model, device=str(device))
        return loaded, processor, loaded.device
    from geodistill.models import load_whisper

    loaded, processor = load_whisper(str(model), device=str(device))
    return loaded.eval(), processor, loaded.device


def _read(path: str | Path) -> np.ndarray:
    """16 kHz mono audio of ``path`` (any length; ``_window`` refuses what short-form cannot take)."""
    from geodistill.data import load_audio

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
    from geodistill.data.audio import probe

    seconds = probe(path)
    if not long_form and seconds > CHUNK_SECONDS:
        raise DataError(f"{path}: {seconds:.1f} s is longer than {window}; split it first")


def iter_transcripts(
    model_spec,
    paths: Sequence[str | Path],
    language: str | None = None,
    beam_size: int = 1,
    device: str = "auto",
    batch_size: int = 8,
    audio_context: str | None = None,
    context_margin: int | None = None,
    engine: str = "hf",
    assistant: str | None = None,
    long_form: bool = False,
    fallback: bool | None = False,
) -> Iterator[tuple[str | Path, str]]:
    """(path, transcript) of each audio file, in order, decoded ``batch_size`` files at a time.

    Every file's header is checked before the model loads, so an unreadable file fails fast with a
    DataError naming it; the audio itself is decoded one batch at a time, so memory does not grow with
    the number of files. ``audio_context`` (full | dynamic) and ``context_margin`` override what the
    model's config stores; at dynamic context a batch is padded to its longest clip + the margin.
    ``fallback`` None: the model's own safeguard (Whisper's temperature fallback; a CTC student has none).
    A CTC student (``geodistill.evaluate.ctc``) decodes greedily, refuses Whisper's options and files
    over 30 s.
    """
    if beam_size < 1 or batch_size < 1:
        raise ValueError(f"beam_size and batch_size must be >= 1, got {beam_size} and {batch_size}")
    check_override(audio_context, context_margin)
    from geodistill.evaluate import ctc

    family_ctc = ctc.is_ctc(model_spec)
    if family_ctc:
        ctc.check_options(engine, assistant, beam_size, fallback, audio_context, context_margin)
        long_form = False
    window = ctc.WINDOW if family_ctc else WHISPER_WINDOW
    for p in paths:
        _check(p, long_form, window)
    model, processor, _ = load_model(model_spec, device, engine, assistant)
    if family_ctc:

        def texts_of(audios: list[np.ndarray], names: Sequence) -> list[str]:
            return ctc.transcribe_clips(model, processor, audios)

    else:
        texts_of = _whisper_texts(
            model, processor, language, beam_size, audio_context, context_margin, fallback
        )
    for i in range(0, len(paths), batch_size):
        batch = paths[i : i + batch_size]
        audios = [_window(p, _read(p), long_form, window) for p in batch]
        yield from zip(batch, texts_of(audios, batch), strict=True)


def _whisper_texts(model, processor, language, beam_size, audio_context, context_margin, fallback):
    """(audios, names) -> stripped transcripts by Whisper's decoding (``decode_audios``: short clips
    batched, long ones by long-form generate) at the resolved audio context; ``fallback`` None means on."""
    from geodistill.evaluate.longform import Decoding, decode_audios
    from geodistill.evaluate.speed import Timer

    context = resolve_audio_context(model, audio_context, context_margin)
    how = Decoding(language, beam_size, None, True if fallback is None else fallback)

    def texts(audios: list[np.ndarray], names: Sequence) -> list[str]:
        ids = decode_audios(
            model,
            processor,
            audios,
            how,
            Timer(),
            Timer(),
            featurize=lambda clips: features(processor, clips, context, names),
        )
        texts = processor.tokenizer.batch_decode([x.tolist() for x in ids], skip_special_tokens=True)
        return [t.strip() for t in texts]

    return texts


def transcribe_files(model_spec, paths: Sequence[str | Path], **options) -> list[str]:
    """Transcripts of audio files (any format soundfile reads; resampled to 16 kHz mono), in order.

    ``model_spec`` is anything ``geodistill.models.load_whisper`` accepts, or a loaded (model, processor);
    ``options`` are ``iter_transcripts``' keywords (an unreadable file fails fast with a DataError naming it).
    """
    return [text for _, text in iter_transcripts(model_spec, paths, **options)]
