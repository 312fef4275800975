"""Batched chunked long-form decoding (``--long-form chunked``): a clip over 30 s is cut into fixed windows
that decode ``batch_size`` at a time, not one after the other, and the windows' texts are merged.

- hf: transformers' ASR pipeline on the loaded model and processor (``chunk_length_s=30``,
  ``stride_length_s=5``, ``batch_size``): windows start every 20 s and overlap by 10 s, and the pipeline
  merges neighbours where their tokens agree, by the timestamps Whisper predicts. Windows of several clips
  share batches. Segment times are the merged ones the pipeline returns.
- ct2: faster-whisper's ``BatchedInferencePipeline`` with ``clip_timestamps`` = back-to-back 30-s windows
  and ``vad_filter`` off. It refuses overlapping clips (its count of the audio left after VAD goes
  negative), so the windows do not overlap and a word cut at a boundary may be lost. It decodes without
  timestamp tokens, its batched default: with them it drops each window's unfinished last segment and never
  goes back for it (tiny.en on the 10-minute recording: 32.8 % WER instead of 24.5 %). So a window is one
  segment; ``--word-timestamps`` times the words inside it. It decodes at one temperature: no fallback.

Either way every window is 30 s of audio (the last one shorter), so a dynamic-context student runs at full
context here, as in sequential long-form decoding. Shorter clips keep the batched short-form path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from geodistill.decoding.engines import Ct2Whisper
from geodistill.decoding.fallback import fallback_kwargs
from geodistill.decoding.segments import Segment, Word
from geodistill.decoding.whisper import SAMPLE_RATE, default_max_new_tokens, is_multilingual

WINDOW_SECONDS = 30  # Whisper's window
STRIDE_SECONDS = 5  # hf: each window's edge that its neighbour decodes too (transformers' chunk_length_s / 6)


def window_starts(samples: int, engine: str) -> list[int]:
    """First sample of each window of a clip of ``samples`` samples: hf every 20 s until a window reaches the
    end (transformers' ``chunk_iter``), ct2 every 30 s."""
    length = WINDOW_SECONDS * SAMPLE_RATE
    step = length - (2 * STRIDE_SECONDS * SAMPLE_RATE if engine == "hf" else 0)
    starts = [0]
    while starts[-1] + length < samples:
        starts.append(starts[-1] + step)
    return starts


def count_windows(how, clips: Sequence[np.ndarray], engine: str) -> None:
    """Add the clips' windows and the batches they decode in to ``how.stats`` (hf batches windows across
    clips, ct2 within one)."""
    counts = [len(window_starts(c.size, engine)) for c in clips]
    batches = (
        math.ceil(sum(counts) / how.batch_size)
        if engine == "hf"
        else sum(math.ceil(n / how.batch_size) for n in counts)
    )
    how.stats["chunked_windows"] = how.stats.get("chunked_windows", 0) + sum(counts)
    how.stats["chunked_batches"] = how.stats.get("chunked_batches", 0) + batches


def _hf_segments(model, processor, clips: Sequence[np.ndarray], how) -> list[list[Segment]]:
    """Segments of each clip by transformers' chunked ASR pipeline, ``how.batch_size`` windows at a time."""
    from transformers import pipeline  # noqa: PLC0415 -- transformers.pipelines imports much; only here

    asr = pipeline(
        "automatic-speech-recognition",
        model=model,
        tokenizer=processor.tokenizer,
        feature_extractor=processor.feature_extractor,
        device=model.device,
    )
    kwargs: dict = {
        "num_beams": how.beam_size,
        "max_new_tokens": how.max_new_tokens or default_max_new_tokens(model),  # per window
    }
    if how.fallback:
        kwargs.update(fallback_kwargs())
    if is_multilingual(model):
        kwargs.update(task="transcribe", language=how.language)
    found = asr(
        [np.asarray(c, dtype=np.float32) for c in clips],
        chunk_length_s=WINDOW_SECONDS,
        stride_length_s=STRIDE_SECONDS,
        batch_size=how.batch_size,
        return_timestamps=True,
        ignore_warning=True,  # its "experimental with seq2seq models" note is about non-Whisper models
        generate_kwargs=kwargs,
    )
    out = []
    for clip, result in zip(clips, found, strict=True):
        duration = clip.size / SAMPLE_RATE
        segs = []
        for chunk in result["chunks"]:
            start, end = chunk["timestamp"]
            end = duration if end is None else end  # the last segment may have no closing timestamp
            segs.append(Segment(float(start or 0.0), float(end), chunk["text"]))
        out.append(segs)
    return out


def _ct2_segments(model: Ct2Whisper, clip: np.ndarray, how, words: bool) -> tuple[list[Segment], str]:
    """(segments, language) of one clip by faster-whisper's BatchedInferencePipeline over 30-s windows."""
    from faster_whisper import BatchedInferencePipeline  # noqa: PLC0415 -- the deploy extra; only here

    duration = clip.size / SAMPLE_RATE
    windows = [
        {"start": s / SAMPLE_RATE, "end": min(duration, s / SAMPLE_RATE + WINDOW_SECONDS)}
        for s in window_starts(clip.size, "ct2")
    ]
    found, info = BatchedInferencePipeline(model.faster_whisper()).transcribe(
        np.asarray(clip, dtype=np.float32),
        language=how.language if model.model.is_multilingual else None,
        beam_size=how.beam_size,
        temperature=0.0,
        condition_on_previous_text=False,
        without_timestamps=True,
        word_timestamps=words,
        vad_filter=False,
        clip_timestamps=windows,
        batch_size=how.batch_size,
        max_new_tokens=how.max_new_tokens or default_max_new_tokens(model),
    )
    segs = [
        Segment(
            s.start,
            s.end,
            s.text,
            tuple(Word(w.start, w.end, w.word, float(w.probability)) for w in (s.words or ())),
        )
        for s in found
    ]
    return segs, info.language


def chunked_segments(
    model, processor, clips: Sequence[np.ndarray], how, words: bool = False
) -> list[tuple[list[Segment], str | None]]:
    """(segments, language or None) of each clip over 30 s, by the engine's batched chunked decoding
    (module doc); counts windows and batches in ``how.stats``. ``words``: ct2 only (checked before)."""
    if isinstance(model, Ct2Whisper):
        count_windows(how, clips, "ct2")
        return [_ct2_segments(model, c, how, words) for c in clips]
    count_windows(how, clips, "hf")
    return [(segs, None) for segs in _hf_segments(model, processor, clips, how)]
