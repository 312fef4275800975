"""How close a model's word (and segment) timestamps lie to a reference model's on the same clips, e.g. a
distilled student against its teacher: do the alignment heads it kept still point at the right audio?

    python scripts/word_times.py runs/demo/run/best tiny.en runs/demo/corpus/test --engine hf

Both models transcribe each clip with ``word_timestamps`` (a recording over 30 s in long-form decoding).
Words and segments whose normalised texts match in order are compared
(``geodistill.decoding.segments.time_agreement``), and so are segment boundaries whatever their text
(``boundary_distance``: the mean distance from each reference boundary to the model's nearest one). No
forced alignment of the references installs offline, so the teacher's times are the reference: this
measures agreement, not accuracy.
"""

from __future__ import annotations

import argparse
import math

import torch

from geodistill.data import load_spec
from geodistill.decoding.segments import TimeAgreement, boundary_distance, time_agreement
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
    paths = [u.audio for u in load_spec(a.data, max_duration=3600.0)][: a.limit]  # long-form recordings too
    opts = {"engine": a.engine, "word_timestamps": True, "batch_size": 8, "long_form": True}
    timed = {m: [t for _, t in iter_timed(m, paths, **opts)] for m in (a.reference, a.model)}
    norm = normaliser("en")
    words, segments, boundaries = [], [], []
    for ref, got in zip(timed[a.reference], timed[a.model], strict=True):
        ref_words = [w for s in ref.segments for w in s.words]
        got_words = [w for s in got.segments for w in s.words]
        words.append(time_agreement(ref_words, got_words, norm, a.tolerance))
        segments.append(time_agreement(ref.segments, got.segments, norm, a.tolerance))
        boundaries.append(boundary_distance(ref.segments, got.segments))
    print(f"{a.model} against {a.reference}, engine {a.engine}, {len(paths)} clips of {a.data}:")
    print(f"| items | matched | mean abs start diff | mean abs end diff | both within {a.tolerance:g} s |")
    print("|---|---|---|---|---|")
    for name, g in (("words", pooled(words)), ("segments", pooled(segments))):
        ms = f"{g.start_error * 1000:.0f} ms | {g.end_error * 1000:.0f} ms"
        print(f"| {name} | {g.matched} of {g.total} | {ms} | {g.within:.0%} |")
    counts = [
        (len(r.segments), len(g.segments)) for r, g in zip(timed[a.reference], timed[a.model], strict=True)
    ]
    print(
        f"\nsegment boundaries, whatever the text: {sum(c[1] for c in counts)} segments against the "
        f"reference's {sum(c[0] for c in counts)}; mean distance from each reference "
        f"boundary to the nearest one: "
        f"{1000 * sum(boundaries) / len(boundaries):.0f} ms"
    )


if __name__ == "__main__":
    main()
