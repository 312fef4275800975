"""Timed transcripts: what ``transcribe --output-format json|srt|vtt|tsv`` writes, made by every engine.

A ``Transcript`` is one audio file's text, cut into ``Segment`` s with start and end times in seconds of the
original audio (after voice-activity detection too: ``geodistill.decoding.vad`` maps them back), each
optionally cut into ``Word`` s. Times are clamped to [0, duration] and made monotone here, once, so every
writer can rely on ``0 <= start <= end <= duration`` and on segments that do not go back in time: a Whisper
model predicts its timestamp tokens, and a small or random one can predict a time past the end of the clip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

import torch


@dataclass(frozen=True)
class Word:
    start: float  # seconds from the start of the audio
    end: float  # seconds, >= start
    text: str  # as the model spelled it, with its leading space ("  Hello" -> " Hello")
    probability: float | None = None  # the model's probability of the word (faster-whisper's); None: unknown


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio
    end: float  # seconds, >= start
    text: str  # stripped
    words: tuple[Word, ...] = ()  # empty unless word timestamps were asked for


@dataclass(frozen=True)
class Transcript:
    text: str  # the whole transcript, stripped (what ``transcribe`` prints)
    segments: tuple[Segment, ...]  # in time order, within [0, duration]
    duration: float  # seconds of audio
    language: str | None  # e.g. "en"; None: not known (a multilingual model's detection not reported)


def _clamp(t: float, low: float, high: float) -> float:
    return min(max(float(t), low), high)


def tidy(segments: Iterable[Segment], duration: float) -> tuple[Segment, ...]:
    """``segments`` with empty texts dropped and times clamped into [previous end, duration], so that starts
    and ends never decrease and every time lies within the audio; words are clamped into their segment."""
    out: list[Segment] = []
    floor = 0.0
    for s in segments:
        text = s.text.strip()
        if not text:
            continue
        start = _clamp(s.start, floor, duration)
        end = _clamp(s.end, start, duration)
        words, w_floor = [], start
        for w in s.words:
            w_start = _clamp(w.start, w_floor, end)
            w_end = _clamp(w.end, w_start, end)
            words.append(Word(w_start, w_end, w.text, w.probability))
            w_floor = w_start
        out.append(Segment(start, end, text, tuple(words)))
        floor = start
    return tuple(out)


def transcript(segments: Iterable[Segment], duration: float, language: str | None) -> Transcript:
    """A Transcript of ``segments`` (tidied), its text their texts joined by spaces."""
    kept = tidy(segments, duration)
    return Transcript(" ".join(s.text for s in kept), kept, duration, language)


def whole(text: str, duration: float, language: str | None) -> Transcript:
    """A Transcript of one segment spanning the clip: for an engine that gives no timestamps."""
    return transcript([Segment(0.0, duration, text)], duration, language)


def shifted(t: Transcript, map_time, duration: float) -> tuple[Segment, ...]:
    """``t``'s segments with every time passed through ``map_time(seconds, end=...)`` (a VAD chunk's time ->
    the audio's; ``end`` True for end times)."""
    return tuple(
        Segment(
            map_time(s.start),
            map_time(s.end, end=True),
            s.text,
            tuple(Word(map_time(w.start), map_time(w.end, end=True), w.text, w.probability) for w in s.words),
        )
        for s in t.segments
    )


def joined(parts: Sequence[Transcript], maps: Sequence, duration: float, language: str | None) -> Transcript:
    """One Transcript of an audio decoded in parts (VAD chunks), each part's times mapped by its ``maps``."""
    return transcript(
        [s for t, m in zip(parts, maps, strict=True) for s in shifted(t, m, duration)], duration, language
    )


def hf_words(
    tokenizer, tokens: torch.Tensor, times: torch.Tensor, end: float, text_below: int
) -> tuple[Word, ...]:
    """Words of one segment from transformers' token timestamps (``generate(return_token_timestamps=True)``).

    ``tokens`` (T,) and ``times`` (T,): the segment's tokens and the time (s) each starts at, as transformers'
    ASR pipeline reads them (token i spans times[i] .. times[i + 1]). Tokens at or above ``text_below``
    (timestamps, special tokens) are not text. A text token whose text begins with a space starts a word
    (Whisper's BPE marks word starts so); a word ends where the token after its last piece starts (``end``
    for the segment's last token).
    """
    toks, starts = [int(t) for t in tokens.tolist()], [float(s) for s in times.tolist()]
    words: list[list] = []  # [text, start, end]
    for i, (tok, start) in enumerate(zip(toks, starts, strict=False)):
        if tok >= text_below:
            continue
        piece = tokenizer.decode([tok])
        stop = starts[i + 1] if i + 1 < len(starts) else end
        if not words or piece.startswith(" "):
            words.append([piece, start, stop])
        else:
            words[-1][0] += piece
            words[-1][2] = stop
    return tuple(Word(s, max(s, e), text) for text, s, e in words)


@dataclass(frozen=True)
class TimeAgreement:
    """How far one transcript's times lie from another's, over the items (words or segments) whose
    normalised texts match in order (difflib's longest matching blocks); unmatched items are counted only."""

    matched: int  # items present in both, in the same order
    total: int  # items of the reference transcript
    start_error: float  # mean |start - reference start|, seconds (nan when nothing matched)
    end_error: float  # mean |end - reference end|, seconds
    within: float  # share of matched items whose start and end both lie within ``tolerance`` of the reference


def time_agreement(
    reference: Sequence[Word | Segment],
    other: Sequence[Word | Segment],
    normalise: Callable[[str], str],
    tolerance: float = 0.2,
) -> TimeAgreement:
    """Compare ``other``'s times with ``reference``'s, item by item where their texts (after ``normalise``)
    agree: e.g. a student's word timestamps against its teacher's on the same clip."""
    keys = [[normalise(x.text) for x in items] for items in (reference, other)]
    pairs = [
        (reference[m.a + k], other[m.b + k])
        for m in SequenceMatcher(None, keys[0], keys[1], autojunk=False).get_matching_blocks()
        for k in range(m.size)
    ]
    if not pairs:
        return TimeAgreement(0, len(reference), float("nan"), float("nan"), float("nan"))
    d_start = [abs(b.start - a.start) for a, b in pairs]
    d_end = [abs(b.end - a.end) for a, b in pairs]
    close = sum(s <= tolerance and e <= tolerance for s, e in zip(d_start, d_end, strict=True))
    n = len(pairs)
    return TimeAgreement(n, len(reference), sum(d_start) / n, sum(d_end) / n, close / n)


def boundary_distance(reference: Sequence[Segment], other: Sequence[Segment]) -> float:
    """Mean over ``reference``'s segment boundaries (each start and end) of the distance in seconds to the
    nearest boundary of ``other``: how far a student's segmentation of a recording lies from its teacher's,
    whatever each segment's text (nan when either has none)."""
    ours = [t for s in other for t in (s.start, s.end)]
    theirs = [t for s in reference for t in (s.start, s.end)]
    if not ours or not theirs:
        return float("nan")
    return sum(min(abs(t - u) for u in ours) for t in theirs) / len(theirs)
