"""The loop end to end on tiny random models: the run folder, the logged parts, the saved student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from geodistill.config import load_config
from geodistill.models import load_whisper
from geodistill.train.loop import train


def test_run_folder_has_the_seed_layout_and_a_loadable_student(make_config):
    cfg = load_config(make_config("layout"))
    result = train(cfg)
    run = Path(cfg.run_dir)
    assert result.exit_code == 0 and result.step == 6
    for name in (
        "tb",
        "checkpoint.pt",
        "training_history.json",
        "training_config.json",
        "bad_samples.jsonl",
        "best/model.safetensors",
        "adapter_final/model.safetensors",
        "adapter_final/adapter",
        "adapter_final/projector.safetensors",
        "train.log",
    ):
        assert (run / name).exists(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    history = json.loads((run / "training_history.json").read_text())
    first = history["train"][0]
    for part in ("total", "ce", "kl", "hidden_dec", "kl_weight", "lr", "grad_norm"):
        assert part in first, part
    kl_weights = [e["kl_weight"] for e in history["train"]]
    assert kl_weights[0] < 0.5 and kl_weights[-1] == pytest.approx(0.5)  # linear warm-up over 2 steps
    recorded = json.loads((run / "training_config.json").read_text())
    assert recorded["config"]["train"]["max_steps"] == 6 and "torch" in recorded["versions"]

    # The trained student is a model like any other: the same loader reads the run folder.
    model, processor = load_whisper(str(run))
    assert model.config.decoder_layers == 1
    best = load_whisper(str(run / "best"))[0]
    assert best.config.d_model == 32


def test_trained_student_differs_from_its_initial_copy_and_loss_drops(make_config):
    cfg = load_config(
        make_config("learn", train={"max_steps": 12, "lr": 3e-3, "eval_every": 0, "save_every": 0})
    )
    result = train(cfg)
    losses = [e["total"] for e in result.history["train"]]
    assert min(losses[-3:]) < losses[0]
    assert all(torch.isfinite(torch.tensor(losses)))


def test_rerunning_a_finished_run_does_no_more_steps(make_config):
    cfg = load_config(make_config("again", train={"max_steps": 2, "eval_every": 0}))
    train(cfg)
    again = train(cfg)
    assert again.step == 2 and [e["step"] for e in again.history["train"]] == [1, 2]


def test_teacher_cache_in_the_config_is_built_once_and_read_back(make_config, tmp_path):
    from geodistill.teacher.cache import CachedTeacher, is_complete

    cache = tmp_path / "cache"
    cfg = load_config(
        make_config("cached", teacher_cache=str(cache), train={"max_steps": 2, "eval_every": 0})
    )
    result = train(cfg)
    assert result.exit_code == 0 and is_complete(cache)
    stamp = (cache / "index.json").stat().st_mtime_ns
    again = load_config(
        make_config("cached2", teacher_cache=str(cache), train={"max_steps": 2, "eval_every": 0})
    )
    train(again)
    assert (cache / "index.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert len(CachedTeacher(cache)) == 8
