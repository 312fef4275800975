"""Which clips a CTC student can emit at each output rate (student.ctc.downsample), in characters or BPE.

CTC needs one output frame per unit plus a blank between equal neighbours. At downsample 1 a clip has 50
frames a second; at 3 (the founding document's 3:1) it has 16.7, fewer than the characters of fast speech.
BPE units (``--vocab bpe:N``, trained on the first spec's transcripts, as training does on data.train) are
fewer per second. The training collator skips impossible clips into bad_samples.jsonl; this counts them
beforehand.

    python scripts/ctc_fit.py runs/synth/train.jsonl runs/demo/corpus/test
    python scripts/ctc_fit.py --vocab bpe:256 runs/demo/corpus/train runs/demo/corpus/test
"""

from __future__ import annotations

import argparse
import statistics

from geodistill.data import load_spec
from geodistill.students.ctc.loss import frames_needed
from geodistill.students.ctc.model import output_frames
from geodistill.students.ctc.units import make_units


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="+", help="data specs (manifests, folders); BPE trains on the first")
    p.add_argument("--vocab", default="chars", help="chars | bpe:N (as student.ctc.vocab)")
    a = p.parse_args()
    specs = {spec: load_spec(spec, min_duration=0.0) for spec in a.data}
    units = make_units(a.vocab, (u.text for u in specs[a.data[0]]))
    for spec, utts in specs.items():
        rates, impossible = [], {1: 0, 3: 0}
        for u in utts:
            labels, _ = units.encode(u.text)
            rates.append(len(labels) / u.duration)
            for d in impossible:
                impossible[d] += output_frames(u.duration, d) < frames_needed(labels)
        n = len(utts)
        print(
            f"{spec}: {n} clips, {a.vocab} units/s median {statistics.median(rates):.1f}, "
            f"max {max(rates):.1f} (frames/s: 50 at downsample 1, 16.7 at 3); impossible for CTC: "
            f"downsample 1 {impossible[1]} ({100 * impossible[1] / n:.0f} %), downsample 3 {impossible[3]} "
            f"({100 * impossible[3] / n:.0f} %)"
        )


if __name__ == "__main__":
    main()
