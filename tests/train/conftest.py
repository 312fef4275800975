"""A tiny teacher on disk and a tiny manifest of generated audio: enough to run the real loop in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from tests.conftest import make_tiny_whisper

WORDS = "the quick brown fox jumps over a lazy dog near seven green houses".split()


def write_manifest(folder: Path, n: int, seed: int, prefix: str) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        seconds = 1.2 + 0.1 * i
        t = np.arange(int(16000 * seconds)) / 16000
        audio = 0.2 * np.sin(2 * np.pi * (200 + 40 * i) * t) + 0.02 * rng.standard_normal(t.size)
        path = folder / f"{prefix}{i}.wav"
        sf.write(path, audio.astype(np.float32), 16000)
        text = " ".join(rng.choice(WORDS, size=3 + i % 3))
        rows.append(
            {"audio_filepath": path.name, "text": text.capitalize() + ".", "speaker": f"{prefix}{i % 3}"}
        )
    manifest = folder / f"{prefix}manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


# The tiny teacher's decoder context. A random model decodes until the cap, half the context by default:
# 68 tokens a clip instead of Whisper's 224 keeps every evaluate and pseudo-label pass of the training,
# tuning and cache tests short. 136: the 2-token prompt + the 128 new tokens an ablation's test evaluation
# asks for (geodistill.train.validate.VAL_MAX_NEW_TOKENS) must fit; its transcripts are 10-20 tokens.
TEACHER_TEXT_CTX = 136


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory, tiny_processor) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    make_tiny_whisper(d_model=32, layers=2, heads=2, seed=1, text_ctx=TEACHER_TEXT_CTX).save_pretrained(out)
    tiny_processor.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("data")
    return write_manifest(folder, 8, 0, "tr"), write_manifest(folder, 2, 1, "va")


def four_step_config(
    run_dir: Path, teacher: Path, train_spec: Path, val_spec: Path, student: dict, loss: dict
) -> Path:
    """``<run_dir>.yaml`` for a 4-step run (batch 2, lr 3e-3, two validations, seed 3)."""
    cfg = {
        "teacher": str(teacher),
        "student": student,
        "loss": loss,
        "data": {"train": str(train_spec), "val": str(val_spec), "val_limit": 2},
        "train": {
            "max_steps": 4,
            "warmup_steps": 1,
            "lr": 3e-3,
            "batch_size": 2,
            "eval_every": 2,
            "save_every": 2,
            "log_every": 1,
            "num_workers": 0,
            "seed": 3,
            "device": "cpu",
        },
        "run_dir": str(run_dir),
    }
    path = run_dir.parent / f"{run_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def make_config(tmp_path, tiny_teacher_dir, tiny_data):
    """Write a tiny config YAML; keyword overrides are nested dicts merged into the defaults below."""

    def make(run_name: str = "run", **sections) -> Path:
        train, val = tiny_data
        cfg = {
            "teacher": str(tiny_teacher_dir),
            "student": {"init": "copy", "decoder_layers": 1, "lora": {"r": 4, "alpha": 8, "dropout": 0.1}},
            "loss": {"kl_weight": 0.5, "kl_warmup_steps": 2, "geo_weight": 0.5, "hidden_on": "decoder"},
            "data": {"train": str(train), "val": str(val), "val_limit": 2},
            "train": {
                "max_steps": 6,
                "warmup_steps": 1,
                "lr": 1e-3,
                "batch_size": 2,
                "grad_accum": 2,
                "eval_every": 3,
                "save_every": 3,
                "log_every": 1,
                "num_workers": 0,
                "seed": 3,
            },
            "run_dir": str(tmp_path / run_name),
        }
        for key, value in sections.items():
            cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
        path = tmp_path / f"{run_name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make
