"""Exact resume, signals, non-finite steps and crash-safe checkpoints on tiny random models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from geodistill.config import load_config
from geodistill.decoding.engines import load_engine
from geodistill.errors import GeodistillError
from geodistill.export import export
from geodistill.models import load_whisper
from geodistill.models.ct2 import read_ct2, whisper_dims
from geodistill.models.ggml_read import read_ggml
from geodistill.train import checkpoint as ckpt_mod
from geodistill.train import loop
from geodistill.train.loop import train
from tests.conftest import make_tiny_whisper
from tests.train.conftest import TEACHER_TEXT_CTX

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli_train(config: Path, *overrides: str, env: dict | None = None, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "geodistill.cli", "train", "--config", str(config), *overrides]
    return subprocess.Popen(
        cmd, env=env or ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw
    )


def student_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors = load_file(run_dir / "adapter_final" / "model.safetensors")
    tensors.update(
        {f"proj.{k}": v for k, v in load_file(run_dir / "adapter_final" / "projector.safetensors").items()}
    )
    return tensors


def kill9_then_rerun(make_config, **sections) -> tuple[dict, dict]:
    """2N steps straight vs N steps, SIGKILL, rerun; asserts both end alike and returns their histories."""
    straight = make_config("straight", **sections)
    proc = cli_train(straight)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out

    crashed = make_config("crashed", **sections)
    proc = cli_train(crashed, env={**ENV, loop.CRASH_ENV: "3"})
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, out
    run_b = Path(load_config(crashed).run_dir)
    saved = torch.load(run_b / "checkpoint.pt", weights_only=True)
    assert json.loads(saved["state"]["history"])["train"][-1]["step"] == 3
    assert not (run_b / "adapter_final").exists()

    proc = cli_train(crashed)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "resumed from" in out

    run_a = Path(load_config(straight).run_dir)
    a, b = student_tensors(run_a), student_tensors(run_b)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    hist_a = json.loads((run_a / "training_history.json").read_text())
    hist_b = json.loads((run_b / "training_history.json").read_text())
    assert hist_a == hist_b
    assert [e["step"] for e in hist_a["train"]] == [1, 2, 3, 4, 5, 6]
    assert [e["step"] for e in hist_a["val"]] == [3, 6]
    return hist_a, hist_b


@pytest.mark.slow
def test_kill9_then_rerun_is_bit_identical_to_straight_run(make_config):
    """2N steps straight vs N steps, SIGKILL, rerun: same parameters bit for bit and same history."""
    kill9_then_rerun(make_config, train={"num_workers": 2})


@pytest.mark.slow
def test_kill9_then_rerun_is_bit_identical_with_augmentation_on(make_config):
    """The same with speed, noise and SpecAugment masks drawn on the fly: the crash falls mid-epoch (4
    samples a step, 8 utterances), and the rerun draws what the straight run drew, in workers too."""
    augment = {"speed": 0.1, "noise": 0.5, "time_masks": 2, "freq_masks": 2}
    history, _ = kill9_then_rerun(make_config, train={"num_workers": 2}, data={"augment": augment})
    plain = make_config("plain", train={"num_workers": 0})  # the same run without augmentation
    assert train(load_config(plain)).exit_code == 0
    clean = json.loads((Path(load_config(plain).run_dir) / "training_history.json").read_text())
    assert [e["total"] for e in clean["train"]] != [e["total"] for e in history["train"]]


@pytest.mark.slow
def test_a_dynamic_student_with_dropped_layers_resumes_exactly_and_exports_to_every_format(
    make_config, tmp_path, tiny_processor
):
    """Issue 29's student: dynamic audio context, an encoder and a decoder layer dropped (2 -> 1 each), every
    weight trained, every kept decoder layer matched to the teacher's. It resumes bit for bit after kill -9,
    and each export format keeps its layers and its context rule."""
    student = {
        "init": "copy",
        "encoder_layers": 1,
        "decoder_layers": 1,
        "lora": {"r": 0},
        "freeze_encoder": False,
        "audio_context": "dynamic",
        "context_margin": 8,
        "context_jitter": 8,
    }
    loss = {"hidden_on": "decoder", "hidden_layers": "all"}
    teacher = tmp_path / "teacher"  # MLPs 4 x d_model wide, as every Whisper's (whisper.cpp assumes it)
    wide = make_tiny_whisper(d_model=32, layers=2, seed=1, ffn=128, text_ctx=TEACHER_TEXT_CTX)
    wide.save_pretrained(teacher)
    tiny_processor.save_pretrained(teacher)
    sections = {"teacher": str(teacher), "student": student, "loss": loss}
    kill9_then_rerun(make_config, **sections)
    run = Path(load_config(make_config("crashed", **sections)).run_dir)
    rule = {"geodistill_audio_context": "dynamic", "geodistill_context_margin": 8}
    hf = export(run, "hf", tmp_path / "hf")
    model, _ = load_whisper(str(hf))
    assert (model.config.encoder_layers, model.config.decoder_layers) == (1, 1)
    assert {k: getattr(model.config, k) for k in rule} == rule
    ct2 = export(run, "ct2", tmp_path / "ct2")
    variables, aliases = read_ct2(ct2 / "model.bin")
    dims = whisper_dims(variables, aliases, str(ct2))
    assert (dims["encoder_layers"], dims["decoder_layers"]) == (1, 1)
    ggml = read_ggml(export(run, "ggml", tmp_path / "ggml") / "ggml-model.bin", load_tensors=False)
    assert (ggml.hparams["n_audio_layer"], ggml.hparams["n_text_layer"]) == (1, 1)
    onnx = export(run, "onnx", tmp_path / "onnx")
    for folder in (ct2, tmp_path / "ggml", onnx):
        assert json.loads((folder / "geodistill_context.json").read_text()) == rule, folder
    onnx_model, _, _ = load_engine(str(onnx), "cpu", "onnx")
    assert onnx_model.config.decoder_layers == 1


@pytest.mark.slow
def test_sigterm_checkpoints_and_exits_143(make_config):
    config = make_config("term", train={"max_steps": 100000, "save_every": 0, "eval_every": 0})
    run_dir = Path(load_config(config).run_dir)
    proc = cli_train(config)
    deadline = time.time() + 120
    while time.time() < deadline and not (run_dir / "tb").exists():
        time.sleep(0.2)
    time.sleep(2.0)  # let a few steps run
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]
    assert state["step"] >= 1
    assert "stopped by signal" in (run_dir / "train.log").read_text()


def test_non_finite_steps_are_skipped_then_stop(make_config, monkeypatch):
    cfg = load_config(
        make_config("nan", train={"max_steps": 4, "eval_every": 0, "save_every": 0, "max_bad_steps": 3})
    )
    real = loop.compute_loss
    calls = {"n": 0}

    def poisoned(run, loss_fn, batch, step):
        calls["n"] += 1
        total, parts = real(run, loss_fn, batch, step)
        return (
            (total * float("nan"), parts) if calls["n"] in (3, 4) else (total, parts)
        )  # step 2's two micro-batches

    monkeypatch.setattr(loop, "compute_loss", poisoned)
    result = train(cfg)
    assert result.exit_code == 0 and result.step == 4
    assert len(result.history["skipped"]) == 1 and result.history["skipped"][0]["after_step"] == 1
    assert all(torch.isfinite(t).all() for t in student_tensors(Path(cfg.run_dir)).values())

    cfg = load_config(make_config("nan2", train={"max_steps": 4, "eval_every": 0, "max_bad_steps": 3}))
    monkeypatch.setattr(
        loop, "compute_loss", lambda *a, **k: (torch.tensor(float("nan"), requires_grad=True), {})
    )
    with pytest.raises(GeodistillError, match="3 non-finite steps in a row"):
        train(cfg)


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt_mod.save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def dying_save(obj, f):
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(OSError):
        ckpt_mod.save_checkpoint(path, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    state = ckpt_mod.load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))


def test_damaged_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(GeodistillError, match="unreadable checkpoint"):
        ckpt_mod.load_checkpoint(path)


def test_changed_config_on_resume_warns_or_refuses(make_config):
    config = make_config("change", train={"max_steps": 2, "eval_every": 0})
    train(load_config(config))
    longer = train(load_config(config, ["train.max_steps=3"]))
    assert longer.step == 3
    assert "train.max_steps: 2 -> 3" in (Path(load_config(config).run_dir) / "train.log").read_text()
    with pytest.raises(GeodistillError, match="student.decoder_layers"):
        train(load_config(config, ["student.decoder_layers=2", "train.max_steps=4"]))
