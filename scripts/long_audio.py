"""Join real recordings into one long file (and a one-row manifest with the joined transcript), to measure
long-form transcription on real speech when no long real recording with a transcript installs offline.

    python scripts/long_audio.py runs/demo/corpus/test runs/long --seconds 60
    geodistill evaluate --model tiny.en --data runs/long/manifest.jsonl --out runs/long/eval-teacher

Clips are taken in the data spec's order until ``--seconds`` is reached, with ``--gap`` seconds of silence
between them (0.3 s; longer gaps make a recording with pauses for voice-activity detection to skip).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from geodistill.data import load_audio, load_spec

SAMPLE_RATE = 16000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", help="a data spec of real recordings")
    p.add_argument("out", type=Path)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--gap", type=float, default=0.3, help="seconds of silence between clips")
    a = p.parse_args()
    gap = np.zeros(int(a.gap * SAMPLE_RATE), dtype=np.float32)
    parts, texts, seconds = [], [], 0.0
    for utt in load_spec(a.data):
        if seconds >= a.seconds:
            break
        audio = load_audio(utt)
        parts += [audio, gap]
        texts.append(utt.text.strip())
        seconds += (len(audio) + len(gap)) / SAMPLE_RATE
    a.out.mkdir(parents=True, exist_ok=True)
    sf.write(a.out / "long.wav", np.concatenate(parts), SAMPLE_RATE)
    row = {"audio_filepath": "long.wav", "text": " ".join(texts), "duration": round(seconds, 2)}
    (a.out / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    print(f"{a.out / 'long.wav'}: {seconds:.1f} s from {len(texts)} clips")


if __name__ == "__main__":
    main()
