"""A tiny random Whisper saved as an HF folder, and manifests of generated clips (plus one broken file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import make_tiny_whisper

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


@pytest.fixture
def clip_manifest(tmp_path) -> tuple[Path, list[dict]]:
    """A manifest of 4 generated clips and one file that is not audio (1.5 s claimed)."""
    rows = write_clips(tmp_path, 4)
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00not a wave file at all" * 40)
    broken = {"audio_filepath": "broken.wav", "text": "never heard", "duration": 1.5, "speaker": "s0"}
    return write_manifest(tmp_path, rows[:2] + [broken] + rows[2:]), rows


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_processor) -> Path:
    """A tiny random English-only Whisper + the real tiny.en processor, saved with save_pretrained."""
    folder = tmp_path_factory.mktemp("tiny-whisper")
    make_tiny_whisper(d_model=32, layers=1).save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    return folder
