"""Small corpora written on the fly: the same clips as LibriSpeech, JSONL, CSV, HF dataset and audiofolder."""

from __future__ import annotations

import csv
import io
import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def tone(
    seconds: float, rate: int = 16000, freq: float = 440.0, channels: int = 1, seed: int = 0
) -> np.ndarray:
    """A sine plus a little noise, (n,) or (n, channels) float32."""
    t = np.arange(int(round(seconds * rate))) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * np.random.default_rng(seed).standard_normal(t.size)
    x = x.astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


@dataclass(frozen=True)
class Clip:
    uid: str  # LibriSpeech-style id speaker-chapter-utt
    speaker: str
    text: str
    seconds: float
    rate: int
    channels: int
    fmt: str  # file extension: wav, flac, ogg

    @property
    def seed(self) -> int:
        return zlib.crc32(self.uid.encode())

    @property
    def name(self) -> str:
        return f"{self.uid}.{self.fmt}"


CLIPS = (
    Clip("11-1-0000", "11", "HELLO WORLD", 1.5, 16000, 1, "flac"),
    Clip("11-1-0001", "11", "A second, cased clip.", 2.0, 22050, 2, "wav"),
    Clip("12-3-0000", "12", "the third one", 1.25, 8000, 1, "ogg"),
    Clip("13-2-0000", "13", "Fourth clip here", 2.5, 44100, 1, "flac"),
)


def write_clip(path: Path, clip: Clip) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = tone(clip.seconds, clip.rate, channels=clip.channels, seed=clip.seed)
    sf.write(path, audio, clip.rate, format=clip.fmt.upper())


def write_librispeech(root: Path, clips=CLIPS) -> Path:
    by_chapter: dict[Path, list[Clip]] = {}
    for c in clips:
        spk, chap, _ = c.uid.split("-")
        folder = root / spk / chap
        write_clip(folder / c.name, c)
        by_chapter.setdefault(folder, []).append(c)
    for folder, cs in by_chapter.items():
        spk, chap = folder.parent.name, folder.name
        (folder / f"{spk}-{chap}.trans.txt").write_text(
            "".join(f"{c.uid} {c.text}\n" for c in cs), encoding="utf-8"
        )
    return root


def manifest_rows(audio_dir: Path, clips=CLIPS, relative: bool = True) -> list[dict]:
    rows = []
    for c in clips:
        write_clip(audio_dir / c.name, c)
        path = f"{audio_dir.name}/{c.name}" if relative else str(audio_dir / c.name)
        rows.append(
            {"id": c.uid, "audio_filepath": path, "text": c.text, "speaker": c.speaker, "language": "en"}
        )
    return rows


def write_jsonl(path: Path, rows: list[dict], extra_lines: tuple[bytes, ...] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows) + b"".join(extra_lines)
    path.write_bytes(data)
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_hf(folder: Path, clips=CLIPS, text_column: str = "text") -> Path:
    """A datasets dataset saved with save_to_disk, audio as bytes (building it needs no torchcodec)."""
    datasets = pytest.importorskip("datasets", reason="datasets is the optional extra geodistill[hf]")

    cells = []
    for c in clips:
        buf = io.BytesIO()
        sf.write(buf, tone(c.seconds, c.rate, channels=c.channels, seed=c.seed), c.rate, format=c.fmt.upper())
        cells.append({"bytes": buf.getvalue(), "path": c.name})
    ds = datasets.Dataset.from_dict(
        {
            "audio": cells,
            text_column: [c.text for c in clips],
            "id": [c.uid for c in clips],
            "speaker_id": [c.speaker for c in clips],
        }
    )
    ds = ds.cast_column("audio", datasets.Audio(decode=False))
    ds.save_to_disk(str(folder))
    return folder


@pytest.fixture
def librispeech(tmp_path) -> Path:
    return write_librispeech(tmp_path / "ls")
