"""CTC prefix beam search over a CTC student's frames, with an optional word n-gram LM (shallow fusion).

    score(prefix) = log P_ctc(prefix | frames) + alpha * ln P_lm(words) + beta * words

Each hypothesis is a unit sequence (repeats collapsed, blanks dropped) with the two CTC path scores that end
in a blank or not (Graves 2012; Hannun et al. 2014, "first-pass LVCSR with CTC"). A word is scored by the LM
when it completes: at a space (characters), at the next piece that starts with "▁" (BPE), and at the end,
where </s> is scored too. ``alpha`` weighs the LM against the acoustic scores, ``beta`` rewards each word
(else the LM's per-word cost favours dropping words); both want tuning on validation data. Without an LM
it is plain prefix beam search (``alpha`` = ``beta`` = 0).

Why not pyctcdecode: its last release (0.5.0) pins numpy < 2, and installing it downgrades the numpy the
rest of the stack needs; KenLM, which it uses to load LMs, has no wheel for this platform. The LM here is
``geodistill.decoding.ngram``'s ARPA reader (KenLM's ARPA files load too).

Frames whose best unit is the blank with probability over ``BLANK_SKIP`` only extend every hypothesis by a
blank (the rest is pruned anyway), and each frame considers only units within ``PRUNE`` (natural log) of
its best: both keep the pure-Python search cheap on a CTC student's mostly-blank output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geodistill.decoding.ngram import BOS, EOS, NGramLM
from geodistill.students.ctc.loss import BLANK
from geodistill.students.ctc.units import WORD

LN10 = math.log(10.0)
PRUNE = 10.0  # per frame, units more than this far (ln) below the best one are not tried
BLANK_SKIP = 0.999  # a frame whose blank has at least this probability only extends by blanks
NEG = -math.inf


@dataclass(frozen=True)
class Hyp:
    """What the LM knows of a prefix: its completed words, the word being spelled, their LM score."""

    words: tuple[str, ...] = ()
    partial: str = ""
    lm: float = 0.0  # alpha * ln P_lm(words) + beta * len(words)


class Scorer:
    """The LM side of the search: ``alpha`` * ln P + ``beta`` per word (0 and 0 without a model)."""

    def __init__(self, lm: NGramLM | None, alpha: float, beta: float):
        self.lm, self.alpha, self.beta = lm, alpha, beta

    def word(self, hyp: Hyp, word: str) -> Hyp:
        """``hyp`` with ``word`` completed."""
        gain = self.beta
        if self.lm is not None:
            gain += self.alpha * LN10 * self.lm.logp((BOS, *hyp.words), word)
        return Hyp((*hyp.words, word), "", hyp.lm + gain)

    def extend(self, hyp: Hyp, unit: str) -> Hyp:
        """``hyp`` after one more unit: a space or a "▁" piece completes the word being spelled."""
        if unit == " " or unit.startswith(WORD):
            done = self.word(hyp, hyp.partial) if hyp.partial else hyp
            return Hyp(done.words, unit.removeprefix(WORD).strip(), done.lm)
        return Hyp(hyp.words, hyp.partial + unit, hyp.lm)

    def final(self, hyp: Hyp) -> float:
        """The LM score of the whole transcript: the last word completed, then </s>."""
        done = self.word(hyp, hyp.partial) if hyp.partial else hyp
        end = self.alpha * LN10 * self.lm.logp((BOS, *done.words), EOS) if self.lm is not None else 0.0
        return done.lm + end


def _lse(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) on Python floats (numpy's ufunc costs more than the sum here)."""
    if a == NEG:
        return b
    if b == NEG:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def beam_search(log_probs: np.ndarray, vocab: Sequence[str], beam: int, scorer: Scorer) -> str:
    """The best transcript of one clip's log-probs (T, V) (natural log, real frames only)."""
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG)}  # prefix -> (ends blank, ends not)
    hyps: dict[tuple[int, ...], Hyp] = {(): Hyp()}
    # the blank and <unk> spell nothing
    labels = ["" if i == BLANK or (u.startswith("<") and u.endswith(">")) else u for i, u in enumerate(vocab)]
    skip = math.log(BLANK_SKIP)
    for row in log_probs:
        blank = float(row[BLANK])
        if blank >= skip:
            beams = {p: (_lse(b, nb) + blank, NEG) for p, (b, nb) in beams.items()}
            continue
        tried = np.nonzero(row >= row.max() - PRUNE)[0]
        units = [(int(u), float(row[u])) for u in tried if u != BLANK]
        nxt: dict[tuple[int, ...], list[float]] = {}
        for prefix, (b, nb) in beams.items():
            total = _lse(b, nb)
            slot = nxt.setdefault(prefix, [NEG, NEG])
            slot[0] = _lse(slot[0], total + blank)
            last = prefix[-1] if prefix else None
            for u, p in units:
                if u == last:  # a repeat without a blank between stays the same unit
                    slot[1] = _lse(slot[1], nb + p)
                    came = b + p  # after a blank it is a new one
                else:
                    came = total + p
                longer = (*prefix, u)
                if longer not in hyps:
                    hyps[longer] = scorer.extend(hyps[prefix], labels[u])
                grown = nxt.setdefault(longer, [NEG, NEG])
                grown[1] = _lse(grown[1], came)
        ranked = sorted(nxt.items(), key=lambda kv: -(_lse(*kv[1]) + hyps[kv[0]].lm))
        beams = {p: (s[0], s[1]) for p, s in ranked[:beam]}
    best = max(beams, key=lambda p: _lse(*beams[p]) + scorer.final(hyps[p]))
    hyp = hyps[best]
    return " ".join([*hyp.words, hyp.partial]).strip()
