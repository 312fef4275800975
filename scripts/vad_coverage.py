"""Which clips of a joined recording (``scripts/long_audio.py``) voice-activity detection misses: for each
clip, the share of its samples inside the speech silero-vad finds, and the reference words in clips it
mostly drops (words that ``--vad`` can never transcribe).

    python scripts/vad_coverage.py runs/demo/corpus/test runs/long10/long.wav --gap 2
"""

from __future__ import annotations

import argparse

import numpy as np
import soundfile as sf
import torch

from geodistill.data import load_audio, load_spec
from geodistill.decoding.vad import speech_spans

SAMPLE_RATE = 16000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="the data spec the recording was joined from")
    p.add_argument("recording", help="the joined file")
    p.add_argument("--gap", type=float, default=0.3, help="seconds of silence between clips, as joined")
    p.add_argument("--below", type=float, default=0.5, help="a clip counts as missed below this share")
    a = p.parse_args()
    torch.set_num_threads(1)
    audio, _ = sf.read(a.recording, dtype="float32")
    found = np.zeros(audio.size, dtype=bool)
    for start, end in speech_spans(audio):
        found[start:end] = True
    rows, at = [], 0
    for utt in load_spec(a.data):
        if at >= audio.size:
            break
        n = load_audio(utt).size
        rows.append((float(found[at : at + n].mean()), utt.id, len(utt.text.split()), utt.text))
        at += n + int(a.gap * SAMPLE_RATE)
    missed = sorted(r for r in rows if r[0] < a.below)
    words = sum(r[2] for r in rows)
    lost = sum(r[2] for r in missed)
    print(
        f"{len(rows)} clips, {words} reference words; {len(missed)} clips under {a.below:.0%} speech found,"
    )
    print(f"  holding {lost} words ({lost / words:.1%}):")
    for share, uid, n, text in missed:
        print(f"  {share:4.0%}  {uid}  {n} words  {text[:60]}")


if __name__ == "__main__":
    main()
