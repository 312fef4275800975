"""Batched chunked long-form decoding (``--long-form chunked``): a clip over 30 s is cut into fixed windows
that decode ``batch_size`` at a time, not one after the other, and the windows' texts are merged.

The algorithm is transformers' ASR pipeline's (``chunk_length_s=30``, ``stride_length_s=5``): 30-s windows
start every 20 s, so neighbours overlap by 10 s; Whisper decodes each window with timestamps; the tokenizer's
``_decode_asr`` merges neighbours where their tokens agree and gives the segment times. Windows of several
clips share batches.

- hf: the pipeline itself, on the loaded model and processor, with the run's beam, token cap (per window),
  language and temperature fallback.
- ct2: the same windows, log-Mel features and merge around CTranslate2's batched ``generate`` with timestamp
  tokens (the pipeline takes a torch model only), at one temperature. faster-whisper's
  ``BatchedInferencePipeline`` was tried first and left: without VAD it takes back-to-back windows only (it
  refuses overlapping ``clip_timestamps``); with timestamp tokens it drops each window's unfinished last
  segment and never goes back for it (tiny.en, 10-minute recording: 32.8 % WER), and without them tiny.en
  stopped after the first sentence of a window that had a pause (53.8 % on 42 s of LibriVox; this path:
  1.9 %).

Every window is 30 s of audio (the last one shorter) padded to 30 s, so a dynamic-context student runs at
full context here, as in sequential long-form decoding. Shorter clips keep the batched short-form path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from geodistill.decoding.engines import Ct2Whisper
from geodistill.decoding.fallback import fallback_kwargs
from geodistill.decoding.segments import Segment
from geodistill.decoding.whisper import SAMPLE_RATE, default_max_new_tokens, is_multilingual

WINDOW_SECONDS = 30  # Whisper's window
STRIDE_SECONDS = 5  # each window's edge that its neighbour decodes too (the pipeline's default, 30 / 6)
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE  # 480000
STEP_SAMPLES = (WINDOW_SECONDS - 2 * STRIDE_SECONDS) * SAMPLE_RATE  # a window every 20 s
TIME_PRECISION = 0.02  # seconds per timestamp token: 30 s / 1500 encoder positions


def window_starts(samples: int) -> list[int]:
    """First sample of each window of a clip of ``samples`` samples: every 20 s until a window reaches the
    end (transformers' ``chunk_iter``)."""
    starts = [0]
    while starts[-1] + WINDOW_SAMPLES < samples:
        starts.append(starts[-1] + STEP_SAMPLES)
    return starts


def count_windows(how, clips: Sequence[np.ndarray]) -> None:
    """Add the clips' windows and the batches they decode in (across clips) to ``how.stats``."""
    n = sum(len(window_starts(c.size)) for c in clips)
    how.stats["chunked_windows"] = how.stats.get("chunked_windows", 0) + n
    how.stats["chunked_batches"] = how.stats.get("chunked_batches", 0) + math.ceil(n / how.batch_size)


def _segments(chunks: list[dict], duration: float) -> list[Segment]:
    """Segments of the merged ``chunks`` ({"timestamp": (start, end), "text"}) of a clip of ``duration`` s."""
    out = []
    for chunk in chunks:
        start, end = chunk["timestamp"]
        end = duration if end is None else end  # the last segment may have no closing timestamp
        out.append(Segment(float(start or 0.0), float(end), chunk["text"]))
    return out


def _generate_kwargs(model, how) -> dict:
    kwargs: dict = {
        "num_beams": how.beam_size,
        "max_new_tokens": how.max_new_tokens or default_max_new_tokens(model),  # per window
    }
    if is_multilingual(model):
        kwargs.update(task=how.task or "transcribe", language=how.language)
    return kwargs


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
    kwargs = _generate_kwargs(model, how)
    if how.fallback:
        kwargs.update(fallback_kwargs())
    found = asr(
        [np.asarray(c, dtype=np.float32) for c in clips],
        chunk_length_s=WINDOW_SECONDS,
        stride_length_s=STRIDE_SECONDS,
        batch_size=how.batch_size,
        return_timestamps=True,
        ignore_warning=True,  # its "experimental with seq2seq models" note is about non-Whisper models
        generate_kwargs=kwargs,
    )
    return [_segments(r["chunks"], c.size / SAMPLE_RATE) for c, r in zip(clips, found, strict=True)]


def _ct2_segments(model: Ct2Whisper, processor, clips: Sequence[np.ndarray], how) -> list[list[Segment]]:
    """Segments of each clip: the pipeline's windows decoded by CTranslate2, ``how.batch_size`` at a time,
    merged by the tokenizer's ``_decode_asr`` as the pipeline's ``postprocess`` does."""
    windows = [(k, s) for k, c in enumerate(clips) for s in window_starts(c.size)]
    outputs: list[list[dict]] = [[] for _ in clips]
    kwargs = _generate_kwargs(model, how)
    for b in range(0, len(windows), how.batch_size):
        group = windows[b : b + how.batch_size]
        audio = [np.asarray(clips[k][s : s + WINDOW_SAMPLES], dtype=np.float32) for k, s in group]
        feats = processor.feature_extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        ids = model.generate(feats.input_features, return_timestamps=True, **kwargs)
        for (k, s), row, a in zip(group, ids, audio, strict=True):
            last = s + WINDOW_SAMPLES >= clips[k].size
            # (window seconds, left and right seconds its neighbours decode too), as the pipeline passes it
            stride = (a.size / SAMPLE_RATE, STRIDE_SECONDS if s else 0, 0 if last else STRIDE_SECONDS)
            outputs[k].append({"tokens": row.reshape(1, -1).numpy(), "stride": stride})
    out = []
    for clip, mine in zip(clips, outputs, strict=True):
        _, found = processor.tokenizer._decode_asr(
            mine, return_timestamps=True, return_language=None, time_precision=TIME_PRECISION
        )
        out.append(_segments(found["chunks"], clip.size / SAMPLE_RATE))
    return out


def chunked_segments(model, processor, clips: Sequence[np.ndarray], how) -> list[list[Segment]]:
    """Segments of each clip over 30 s by batched chunked decoding (module doc), counting the windows and
    batches in ``how.stats``."""
    count_windows(how, clips)
    if isinstance(model, Ct2Whisper):
        return _ct2_segments(model, processor, clips, how)
    return _hf_segments(model, processor, clips, how)
