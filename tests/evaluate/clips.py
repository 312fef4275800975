"""Generated test audio: short tone + noise WAV clips and a JSONL manifest naming them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

WORDS = "seven green houses near the old river bridge".split()


def write_clips(folder: Path, n: int, seed: int = 0) -> list[dict]:
    """``n`` WAV files (1.2 s + 0.2 s per index, tone + noise) and their manifest rows with made-up text."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        seconds = 1.2 + 0.2 * i
        t = np.arange(int(16000 * seconds)) / 16000
        audio = 0.2 * np.sin(2 * np.pi * (180 + 50 * i) * t) + 0.02 * rng.standard_normal(t.size)
        path = folder / f"clip{i}.wav"
        sf.write(path, audio.astype(np.float32), 16000)
        text = " ".join(rng.choice(WORDS, size=2 + i % 3)).capitalize() + "."
        rows.append({"audio_filepath": path.name, "text": text, "duration": seconds, "speaker": f"s{i % 2}"})
    return rows


def write_manifest(folder: Path, rows: list[dict], name: str = "manifest.jsonl") -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
