"""Voice-activity detection (``--vad``): silence is cut out before decoding, times map back afterwards.

silero-vad (``pip install 'geodistill[vad]'``; its model ships inside the wheel, so it runs offline) finds
the speech in a clip. The speech spans, each padded by ``SPEECH_PAD_MS`` and none longer than 30 s, are
packed in order into ``Chunk`` s of at most ``CHUNK_SAMPLES`` (Whisper's window); a chunk is its spans'
samples placed end to end, the silence between them dropped. Each chunk then decodes as one short clip, so
a recording of any length becomes a batch of 30-s windows, and ``Chunk.to_original`` maps a time in the
chunk back to the clip's own time (a piecewise shift, span by span), as faster-whisper's own
``vad_filter`` does (which ``--engine ct2`` uses instead: ``geodistill.decoding.timed``).
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from geodistill.optional import require

SAMPLE_RATE = 16000
CHUNK_SAMPLES = 30 * SAMPLE_RATE  # Whisper's window: a chunk decodes as one short clip
# faster-whisper's VadOptions defaults, so that --vad cuts alike on every engine (ct2 uses faster-whisper's)
THRESHOLD = 0.5  # silero's speech probability above which a 32-ms frame is speech
MIN_SILENCE_MS = 2000  # a shorter pause does not end a span (it is decoded as it is)
SPEECH_PAD_MS = 400  # kept each side of a span: word onsets and tails are quiet
# An end time this far into a later span of a chunk still ends the span before: that span's first 0.4 s
# are padding, and Whisper's end timestamps run late (tiny.en ended a segment 0.69 s into the next span
# on a LibriVox recording with a 20-s pause, tests/evaluate/test_vad.py)
END_SLACK_MS = 1000


@dataclass(frozen=True)
class Chunk:
    """Speech spans of one clip, in order, decoded together as one clip of at most 30 s."""

    spans: tuple[tuple[int, int], ...]  # (start, end) samples in the clip, in order, not overlapping

    @property
    def samples(self) -> int:
        return sum(e - s for s, e in self.spans)

    def audio(self, clip: np.ndarray) -> np.ndarray:
        """The chunk's samples of ``clip``: its spans end to end (float32, 1-D)."""
        return np.concatenate([clip[s:e] for s, e in self.spans]).astype(np.float32, copy=False)

    def to_original(self, t: float, end: bool = False) -> float:
        """Seconds ``t`` into the chunk's audio -> seconds into the clip it was cut from.

        An ``end`` time within ``END_SLACK_MS`` of the start of a span after the first maps to the end of
        the span before (that span's first ``SPEECH_PAD_MS`` are padding, and Whisper ends segments late);
        a start in the last ``SPEECH_PAD_MS`` of a span maps to the start of the next one. Otherwise a
        segment would stretch over the silence that was cut out.
        """
        offsets = np.cumsum([0] + [e - s for s, e in self.spans])  # chunk sample where each span begins
        sample = float(t) * SAMPLE_RATE
        i = max(0, min(bisect.bisect_right(offsets.tolist(), sample) - 1, len(self.spans) - 1))
        pad = SPEECH_PAD_MS * SAMPLE_RATE / 1000
        if end and i > 0 and sample - offsets[i] < END_SLACK_MS * SAMPLE_RATE / 1000:
            return self.spans[i - 1][1] / SAMPLE_RATE
        if not end and i + 1 < len(self.spans) and offsets[i + 1] - sample < pad:
            return self.spans[i + 1][0] / SAMPLE_RATE
        return (self.spans[i][0] + sample - offsets[i]) / SAMPLE_RATE


@functools.cache
def _silero():
    """silero-vad's model (the TorchScript one from its wheel), loaded once per process."""
    silero = require("silero_vad", "vad", "--vad", package="silero-vad")
    return silero, silero.load_silero_vad()


def speech_spans(clip: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) samples of each stretch of speech in a 16-kHz clip, padded, none over 30 s."""
    silero, model = _silero()
    model.reset_states()
    found = silero.get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(clip, dtype=np.float32)),
        model,
        threshold=THRESHOLD,
        sampling_rate=SAMPLE_RATE,
        max_speech_duration_s=CHUNK_SAMPLES / SAMPLE_RATE,
        min_silence_duration_ms=MIN_SILENCE_MS,
        speech_pad_ms=SPEECH_PAD_MS,
    )
    spans = [(int(s["start"]), min(int(s["end"]), clip.size)) for s in found]
    return [(s, min(e, s + CHUNK_SAMPLES)) for s, e in spans if e > s]


def pack(spans: Sequence[tuple[int, int]], limit: int = CHUNK_SAMPLES) -> list[Chunk]:
    """Consecutive spans packed greedily into chunks of at most ``limit`` samples each (a span over the
    limit is cut into pieces of ``limit``)."""
    chunks: list[list[tuple[int, int]]] = []
    room = 0
    for start, end in spans:
        for s in range(start, end, limit):
            e = min(end, s + limit)
            if not chunks or e - s > room:
                chunks.append([])
                room = limit
            chunks[-1].append((s, e))
            room -= e - s
    return [Chunk(tuple(c)) for c in chunks]


def split(clip: np.ndarray) -> list[Chunk]:
    """The clip's speech as chunks of at most 30 s (none when silero hears no speech)."""
    return pack(speech_spans(clip))
