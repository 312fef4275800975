"""Tiny teachers on disk, a tiny manifest, and a cache built from them (module-scoped: built once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodistill.data import SpeechDataset, WhisperCollator, load_spec, prompt_ids
from geodistill.models import load_whisper
from tests.conftest import make_tiny_whisper
from tests.train import conftest as train_fixtures

# The training tests' tiny teacher, manifests and config writer, shared so both build the same runs.
make_config = train_fixtures.make_config
tiny_data = train_fixtures.tiny_data
tiny_teacher_dir = train_fixtures.tiny_teacher_dir


def save_tiny_teacher(folder: Path, processor, seed: int) -> Path:
    make_tiny_whisper(
        d_model=32, layers=2, heads=2, seed=seed, text_ctx=train_fixtures.TEACHER_TEXT_CTX
    ).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def other_teacher_dir(tmp_path_factory, tiny_processor) -> Path:
    """Same shapes as ``tiny_teacher_dir``, other random weights."""
    return save_tiny_teacher(tmp_path_factory.mktemp("other_teacher"), tiny_processor, seed=7)


@pytest.fixture(scope="session")
def teacher(tiny_teacher_dir):
    return load_whisper(str(tiny_teacher_dir))


def collated_batches(teacher, manifest: Path, batch_size: int, normalise_text: bool = False) -> list[dict]:
    """The manifest as the training loop's collator batches it (in source order)."""
    model, processor = teacher
    ds = SpeechDataset(load_spec(manifest), processor, normalise_text=normalise_text)
    collate = WhisperCollator(prompt_ids(processor, model), processor.tokenizer.pad_token_id)
    return [
        collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
        for i in range(0, len(ds), batch_size)
    ]
