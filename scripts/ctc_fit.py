"""Which clips a character CTC student can emit at each output rate (student.ctc.downsample).

CTC needs one output frame per character plus a blank between equal neighbours. At downsample 1 a clip has 50
frames a second; at 3 (the founding document's 3:1) it has 16.7, fewer than the characters of fast speech.
The training collator skips such clips into bad_samples.jsonl; this counts them beforehand.

    python scripts/ctc_fit.py runs/synth/train.jsonl runs/demo/corpus/test
"""

from __future__ import annotations

import argparse
import statistics

from geodistill.data import load_spec
from geodistill.students.ctc.loss import frames_needed, text_to_labels
from geodistill.students.ctc.model import output_frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="+", help="data specs (manifests, folders)")
    for spec in p.parse_args().data:
        utts = load_spec(spec, min_duration=0.0)
        rates, impossible = [], {1: 0, 3: 0}
        for u in utts:
            labels, _ = text_to_labels(u.text)
            rates.append(len(labels) / u.duration)
            for d in impossible:
                impossible[d] += output_frames(u.duration, d) < frames_needed(labels)
        n = len(utts)
        print(
            f"{spec}: {n} clips, characters/s median {statistics.median(rates):.1f}, "
            f"max {max(rates):.1f}; impossible for CTC: downsample 1 {impossible[1]} "
            f"({100 * impossible[1] / n:.0f} %), downsample 3 {impossible[3]} "
            f"({100 * impossible[3] / n:.0f} %)"
        )


if __name__ == "__main__":
    main()
