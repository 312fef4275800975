"""The decoding loop every student family shares: batches longest first, unreadable audio skipped, a warm-up.

A family supplies one function, ``texts(audios, names, decoded) -> transcripts``, that decodes a batch of
clips and charges its own feature extraction and compute to ``decoded.feature`` / ``decoded.compute``:
Whisper's ``generate`` (``geodistill.students.seq2seq.decode``) or the CTC student's greedy best path
(``geodistill.students.ctc.decode.decode_ctc``). Reading the audio is charged to ``decoded.feature`` here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from geodistill.data import BadSamples, Utterance, load_audio
from geodistill.decoding.speed import Timer
from geodistill.decoding.whisper import CHUNK_SECONDS, SAMPLE_RATE, WHISPER_WINDOW, longest_first
from geodistill.errors import DataError
from geodistill.progress import progress


@dataclass
class Decoded:
    """Transcripts of the usable utterances of a data set, with what it cost to make them."""

    utterances: list[Utterance] = field(default_factory=list)  # decoded utterances, in input order
    hypotheses: list[str] = field(default_factory=list)  # transcript of each, stripped
    audio_seconds: list[float] = field(default_factory=list)  # length of each clip
    compute: Timer = field(default_factory=Timer)  # time inside the model (generate / forward + best path)
    feature: Timer = field(default_factory=Timer)  # time decoding audio and extracting log-Mel features
    n_tokens: int | None = (
        0  # generated text tokens (special tokens, padding excluded); None: no tokens (CTC)
    )
    stats: dict = field(default_factory=dict)  # long clips decoded, short clips that hit the token cap
    # each utterance's no-speech probability (Whisper's; None where the family has none, e.g. CTC)
    no_speech: list[float | None] = field(default_factory=list)
    # the batch being decoded: a family's ``texts`` may set its clips' no-speech probabilities here
    batch_no_speech: list[float | None] = field(default_factory=list)
    warmup: dict | None = None  # the untimed warm-up batch (utterances, seconds), when one ran


BatchTexts = Callable[[list[np.ndarray], list[str], Decoded], list[str]]


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off for decoding; a model that was training (the loop's student) is put back afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def read_batch(
    utts: Sequence[Utterance], bad: BadSamples, long_form: bool = False, window: str = WHISPER_WINDOW
) -> tuple[list[int], list[np.ndarray]]:
    """Positions in ``utts`` of the clips that decode, and the clips; the others go to ``bad`` (which
    raises in strict mode). Clips over 30 s are skipped ("longer than ``window``") unless ``long_form``."""
    kept, audios = [], []
    for i, utt in enumerate(utts):
        try:
            audio = load_audio(utt)
        except DataError as e:
            bad.add(utt, getattr(e, "reason", str(e)))  # BadSampleError's message already names the file
            continue
        if audio.size == 0:
            bad.add(utt, "empty audio")
            continue
        if not long_form and audio.size > CHUNK_SECONDS * SAMPLE_RATE:  # would be cut at 30 s
            bad.add(utt, f"{audio.size / SAMPLE_RATE:.1f} s is longer than {window}")
            continue
        kept.append(i)
        audios.append(audio)
    return kept, audios


def warm_up(utts: Sequence[Utterance], run: Callable[[list[np.ndarray]], object], long_form: bool) -> dict:
    """``run`` once over the clips of ``utts`` that load, untimed and uncounted (first-call allocations,
    lazy init, caches), as the Open ASR leaderboard does before timing; what it decoded and how long."""
    audios = []
    for utt in utts:
        try:
            audio = load_audio(utt)
        except Exception:  # a bad clip is reported by the timed pass, not here
            continue
        if audio.size and (long_form or audio.size <= CHUNK_SECONDS * SAMPLE_RATE):
            audios.append(audio)
    t0 = time.perf_counter()
    if audios:
        run(audios)
    return {"utterances": len(audios), "seconds": time.perf_counter() - t0}


def decode_batches(
    model: torch.nn.Module,
    utts: Sequence[Utterance],
    bad: BadSamples,
    batch_size: int,
    texts: BatchTexts,
    out: Decoded,
    long_form: bool = False,
    window: str = WHISPER_WINDOW,
    warm: Callable[[list[np.ndarray]], object] | None = None,
) -> Decoded:
    """Fill ``out`` with ``texts``' transcripts of ``utts``, ``batch_size`` clips at a time, in eval mode.

    Batches are formed longest first (listed durations) so each pads little; the results are in input
    order. Unreadable, empty and (unless ``long_form``) over-30-s clips go to ``bad``. ``warm`` runs once,
    untimed, over the first batch before timing starts.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows: dict[
        int, tuple[str, float, float | None]
    ] = {}  # input position -> (hypothesis, seconds, no-speech)
    order = longest_first([u.duration or 0.0 for u in utts])
    # leave=False: during training the validation bar sits under the loop's and goes when it is done
    bar = progress(total=len(order), desc="decode", unit="clip", leave=False)
    with eval_mode(model), bar:
        if warm is not None:
            out.warmup = warm_up([utts[i] for i in order[:batch_size]], warm, long_form)
        for start in range(0, len(order), batch_size):
            with out.feature:
                batch = order[start : start + batch_size]
                positions, audios = read_batch([utts[i] for i in batch], bad, long_form, window)
                kept = [batch[p] for p in positions]
            if not kept:
                bar.update(len(batch))
                continue
            out.batch_no_speech = []
            hyps = texts(audios, [utts[i].id for i in kept], out)
            probs = out.batch_no_speech if len(out.batch_no_speech) == len(kept) else [None] * len(kept)
            rows.update(
                {
                    i: (t.strip(), len(a) / SAMPLE_RATE, p)
                    for i, t, a, p in zip(kept, hyps, audios, probs, strict=True)
                }
            )
            bar.update(len(batch))
    for i in sorted(rows):
        out.utterances.append(utts[i])
        out.hypotheses.append(rows[i][0])
        out.audio_seconds.append(rows[i][1])
        out.no_speech.append(rows[i][2])
    return out
