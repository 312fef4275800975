"""How close a model's word (and segment) timestamps lie to a reference model's on the same clips, e.g. a
distilled student against its teacher: do the alignment heads it kept still point at the right audio?

    python scripts/word_times.py runs/demo/run/best tiny.en runs/demo/corpus/test --engine hf

Both models transcribe each clip with ``word_timestamps``; words whose normalised texts match in order are
compared (``geodistill.decoding.segments.time_agreement``). No forced alignment of the references installs
offline, so the teacher's times are the reference: this measures agreement, not accuracy.
"""

from __future__ import annotations

import argparse
import math

import torch

from geodistill.data import load_spec
from geodistill.decoding.segments import TimeAgreement, time_agreement
from geodistill.decoding.wer import normaliser
from geodistill.evaluate.transcribe import iter_timed


def pooled(parts: list[TimeAgreement]) -> TimeAgreement:
    """The agreement over all clips together (means weighted by each clip's matched items)."""
    n = sum(p.matched for p in parts)
    total = sum(p.total for p in parts)
    if not n:
        return TimeAgreement(0, total, math.nan, math.nan, math.nan)
    weighted = [
        sum(getattr(p, k) * p.matched for p in parts if p.matched) / n
        for k in ("start_error", "end_error", "within")
    ]
    return TimeAgreement(n, total, *weighted)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("reference", help="the model whose times count as the reference (e.g. the teacher)")
    p.add_argument("data", help="a data spec")
    p.add_argument("--engine", default="hf", choices=["hf", "ct2"])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--tolerance", type=float, default=0.2, help="seconds")
    a = p.parse_args()
    torch.set_num_threads(1)
    paths = [u.audio for u in load_spec(a.data)][: a.limit]
    opts = {"engine": a.engine, "word_timestamps": True, "batch_size": 8}
    timed = {m: [t for _, t in iter_timed(m, paths, **opts)] for m in (a.reference, a.model)}
    norm = normaliser("en")
    words, segments = [], []
    for ref, got in zip(timed[a.reference], timed[a.model], strict=True):
        ref_words = [w for s in ref.segments for w in s.words]
        got_words = [w for s in got.segments for w in s.words]
        words.append(time_agreement(ref_words, got_words, norm, a.tolerance))
        segments.append(time_agreement(ref.segments, got.segments, norm, a.tolerance))
    print(f"{a.model} against {a.reference}, engine {a.engine}, {len(paths)} clips of {a.data}:")
    print(f"| items | matched | mean abs start diff | mean abs end diff | both within {a.tolerance:g} s |")
    print("|---|---|---|---|---|")
    for name, g in (("words", pooled(words)), ("segments", pooled(segments))):
        ms = f"{g.start_error * 1000:.0f} ms | {g.end_error * 1000:.0f} ms"
        print(f"| {name} | {g.matched} of {g.total} | {ms} | {g.within:.0%} |")


if __name__ == "__main__":
    main()
