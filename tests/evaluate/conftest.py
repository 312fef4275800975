"""A tiny random Whisper saved as an HF folder, tiny CTC students, and manifests of generated clips (plus one
broken file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_tiny_whisper
from tests.evaluate.clips import write_clips, write_manifest
from tests.students.ctc_runs import random_ctc_dir, tiny_ctc_run  # noqa: F401  (fixtures)
from tests.train.conftest import tiny_data, tiny_teacher_dir  # noqa: F401  (the CTC run's fixtures)


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
