"""The CTC student: frame bookkeeping, CTC loss, greedy decoding, labels, and a real training run."""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from geodistill.config import ConfigError, CTCConfig, LossConfig, load_config
from geodistill.contracts import ModelStates, Student, TeacherOutputs
from geodistill.data.bad import BadSamples
from geodistill.data.collate import WhisperCollator
from geodistill.errors import GeodistillError
from geodistill.models import load_whisper
from geodistill.models.context import encode
from geodistill.students.ctc.loss import CHAR_IDS, CHARS, CTCDistillationLoss, CTCLoss, text_to_labels
from geodistill.students.ctc.model import (
    CTCCollator,
    CTCModel,
    CTCShape,
    CTCStudent,
    copy_from_teacher,
    ctc_greedy,
    encoder_macs,
    load_ctc,
    output_frames,
    whisper_encoder_macs,
)
from geodistill.teacher.outputs import OnlineTeacher, OnlineTeacherEncoder
from geodistill.train import loop
from geodistill.train.loop import train
from tests.conftest import make_tiny_whisper

TINY = CTCShape(n_mels=80, d_model=32, layers=2, heads=2, ffn=64, dropout=0.0)


def student(downsample: int = 1, processor=None) -> CTCStudent:
    torch.manual_seed(0)
    shape = CTCShape(**{**TINY.__dict__, "downsample": downsample})
    return CTCStudent(CTCModel(shape).eval(), processor, torch.nn.ModuleDict(), "tiny")


def batch(seconds: list[float]) -> dict:
    torch.manual_seed(1)
    return {"input_features": torch.randn(len(seconds), 80, 3000), "audio_seconds": torch.tensor(seconds)}


@pytest.mark.parametrize(("downsample", "frames"), [(1, [100, 50]), (3, [33, 16])])
def test_a_2s_clip_gives_100_or_33_frames_and_lengths_are_the_real_ones(downsample, frames):
    s = student(downsample)
    assert isinstance(s, Student) and s.family == "ctc"
    assert [output_frames(x, downsample) for x in (2.0, 1.0)] == frames
    states = s(batch([2.0, 1.0]), TeacherOutputs(), None)
    assert states.logits.shape == (2, frames[0], len(CHARS))  # cut to the longest clip, not 30 s
    assert states.encoder_mask.sum(1).tolist() == frames
    assert torch.allclose(states.logits.exp().sum(-1), torch.ones(2, frames[0]), atol=1e-5)


def test_padding_beyond_a_clip_does_not_reach_its_frames():
    s, b = student(), batch([2.0, 1.0])
    before = s(b, TeacherOutputs(), None).logits[1, :50]
    b["input_features"][1, :, 101:] = 5.0  # beyond the 1-s clip (+ the conv's reach)
    assert torch.equal(s(b, TeacherOutputs(), None).logits[1, :50], before)


def test_a_failed_save_keeps_the_previous_student(tiny_processor, tmp_path, monkeypatch):
    from geodistill.students.ctc import model as ctc_mod

    s = student(processor=tiny_processor)
    s.save(tmp_path / "best", {"step": 1})
    monkeypatch.setattr(ctc_mod, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(GeodistillError, match="cannot save the student .*disk full.*previous one is intact"):
        s.save(tmp_path / "best", {"step": 2})
    assert json.loads((tmp_path / "best" / "geodistill.json").read_text())["step"] == 1
    assert not (tmp_path / ".best.tmp").exists()
    model, _ = load_ctc(tmp_path / "best")
    assert torch.equal(model.head.weight, s.model.head.weight)


def test_the_encoder_only_teacher_gives_the_online_teachers_encoder_states():
    teacher = make_tiny_whisper(d_model=32, layers=2, heads=2, seed=4)
    b = {**batch([2.0]), "decoder_input_ids": torch.tensor([[50257, 50362, 400]])}
    full = OnlineTeacher(teacher)(b)
    only = OnlineTeacherEncoder(teacher)(b)
    assert only.logits is None and torch.equal(only.encoder_hidden, full.encoder_hidden)


def test_init_from_teacher_reproduces_the_teachers_encoder():
    teacher = make_tiny_whisper(d_model=32, layers=2, heads=2, seed=4)
    model = CTCModel(TINY).eval()
    copy_from_teacher(model, teacher.model.encoder)
    feats = torch.randn(1, 80, 3000)
    for frames in (3000, 200):
        want = encode(teacher.model.encoder, feats[..., :frames]).last_hidden_state
        _, got, lengths = model(feats[..., :frames], torch.tensor([frames // 2]))
        assert lengths.tolist() == [frames // 2]
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    wide = CTCModel(CTCShape(d_model=64, layers=2, heads=2, ffn=64))
    with pytest.raises(GeodistillError, match="init_from_teacher: needs"):
        copy_from_teacher(wide, teacher.model.encoder)


def test_ctc_loss_matches_torch_and_a_hand_count():
    torch.manual_seed(0)
    log_probs = torch.randn(2, 4, 3).log_softmax(-1)  # blank, a, b
    targets = torch.tensor([[1, 0], [1, 2]])
    input_lengths, target_lengths = torch.tensor([2, 4]), torch.tensor([1, 2])
    got = CTCLoss()(log_probs, targets, input_lengths, target_lengths)
    p = log_probs[0, :2].exp()  # utterance 0: "a" in 2 frames = paths aa, -a, a-
    nll0 = -torch.log(p[0, 1] * p[1, 1] + p[0, 0] * p[1, 1] + p[0, 1] * p[1, 0])
    frames_first = log_probs.transpose(0, 1)
    reference = F.ctc_loss(frames_first, targets, input_lengths, target_lengths, reduction="none")
    assert torch.allclose(reference[0], nll0, atol=1e-6)
    assert torch.allclose(got, reference.mean(), atol=1e-6)
    garbage = log_probs.clone()
    garbage[0, 2:] = torch.tensor([-9.0, -0.01, -9.0])  # frames past utterance 0's real length
    assert torch.equal(CTCLoss()(garbage, targets, input_lengths, target_lengths), got)
    impossible = CTCLoss()(log_probs[:1], torch.tensor([[1, 2, 1]]), torch.tensor([2]), torch.tensor([3]))
    assert impossible.item() == 0.0  # zero_infinity, never inf / NaN


def test_greedy_collapses_repeats_then_drops_blanks():
    def frames(text: str) -> torch.Tensor:  # "_" = blank
        ids = [0 if c == "_" else CHAR_IDS[c] for c in text]
        return F.one_hot(torch.tensor(ids), len(CHARS)).float().log_softmax(-1)

    logits = torch.stack([frames("hh_e_ll_lo  _"), frames("a_a b___zzzzz")])
    assert ctc_greedy(logits, torch.tensor([13, 5])) == ["hello", "aa b"]


def test_text_is_normalised_and_foreign_characters_are_reported():
    ids, dropped = text_to_labels("Hello, World! It's 42 café—ok 中")
    assert "".join(CHARS[i] for i in ids) == "hello world it's forty two cafe ok"
    assert dropped == ["中"]


def test_clips_too_short_for_their_characters_are_skipped_and_reported(tiny_processor, tmp_path, caplog):
    tok = tiny_processor.tokenizer
    bad = BadSamples(tmp_path / "bad_samples.jsonl")
    collate = CTCCollator(WhisperCollator([50257, 50362], 50256), tok, 3, bad)

    def sample(i: str, text: str, seconds: float) -> dict:
        labels = tok(" " + text, add_special_tokens=False).input_ids + [50256]
        return {"id": i, "labels": labels, "audio_seconds": seconds, "input_features": torch.zeros(80, 3000)}

    caplog.set_level(logging.WARNING, logger="geodistill")
    short = sample("short", "a rather long sentence here", 1.0)
    out = collate([sample("ok", "hi 中 there", 2.0), short, None])
    assert out["ids"] == ["ok"] and out["ctc_label_lengths"].tolist() == [8]
    assert "".join(CHARS[i] for i in out["ctc_labels"][0].tolist()) == "hi there"
    (entry,) = [json.loads(x) for x in (tmp_path / "bad_samples.jsonl").read_text().splitlines()]
    assert entry["item"] == "short" and "clip too short for CTC: 16 output frames" in entry["reason"]
    assert "'中' is not in the vocabulary; dropped (first in ok)" in caplog.text


def test_hidden_loss_pools_the_teacher_3_to_1_over_the_clip():
    cfg = LossConfig(ce_weight=1.0, geo_weight=2.0, hidden_on="encoder", hidden_loss="mse")
    states = torch.nn.functional.normalize(torch.randn(1, 4, 8), dim=-1)
    teacher = torch.randn(1, 1500, 8)
    target = teacher[:, :12].reshape(1, 4, 3, 8).mean(2)  # 3:1 average of the first 12 frames only
    s = ModelStates(logits=torch.zeros(1, 4, 29).log_softmax(-1), encoder_hidden=states)
    total, parts = CTCDistillationLoss(cfg, downsample=3)(
        s, TeacherOutputs(encoder_hidden=teacher), torch.tensor([[3]]), torch.tensor([1])
    )
    want = (states - F.normalize(target, dim=-1)).pow(2).mean()
    assert torch.allclose(parts["hidden"], want, atol=1e-6)
    assert torch.allclose(total, parts["ctc"] + 2.0 * want, atol=1e-6)


def test_config_refuses_a_decoder_side_loss_for_ctc():
    with pytest.raises(ConfigError, match="loss.hidden_on: a ctc student has no decoder"):
        load_config(None, ["student.init=ctc"])
    with pytest.raises(ConfigError, match="student.ctc: only used with student.init: ctc"):
        load_config(None, ["student.ctc.layers=2"])
    with pytest.raises(ConfigError, match="student.ctc.downsample: must be 1 or 3"):
        load_config(None, ["student.init=ctc", "loss.hidden_on=encoder", "student.ctc.downsample=2"])
    ctc = ["student.init=ctc", "loss.hidden_on=encoder"]
    with pytest.raises(ConfigError, match="student.ctc.frozen_layers: freezes copied teacher blocks"):
        load_config(None, [*ctc, "student.ctc.frozen_layers=1"])
    with pytest.raises(ConfigError, match=r"student.ctc.frozen_layers: must be in \[0, layers=4\], got 5"):
        load_config(None, [*ctc, "student.ctc.init_from_teacher=true", "student.ctc.frozen_layers=5"])


def test_the_defaults_cost_a_quarter_of_tiny_en_per_second_and_the_preset_a_quarter_of_a_10s_clip():
    tiny_window = whisper_encoder_macs(80, 384, 4, 1536)  # tiny.en: its 30-s window, whatever the clip
    c = CTCConfig()
    defaults = CTCShape(80, c.d_model, c.layers, c.heads, c.ffn, c.downsample)
    assert encoder_macs(defaults, 10.0) / 10 <= 0.25 * tiny_window / 30
    c = load_config("ctc-cpu").student.ctc
    preset = CTCShape(80, c.d_model, c.layers, c.heads, c.ffn, c.downsample)
    assert c.init_from_teacher and 0 < c.frozen_layers <= c.layers
    assert encoder_macs(preset, 10.0) <= 0.251 * tiny_window  # 25.05 %
    assert encoder_macs(preset, 5.0) <= 0.12 * tiny_window


def ctc_sections(**train) -> dict:
    ctc = {"d_model": 32, "layers": 2, "heads": 2, "ffn": 64, "init_from_teacher": True}
    return {
        "student": {"init": "ctc", "ctc": ctc},
        "loss": {"hidden_on": "encoder", "kl_weight": 0.0},
        "train": {"max_steps": 4, "eval_every": 2, "save_every": 2, **train},
    }


def test_train_runs_saves_and_loads(make_config):
    cfg = load_config(make_config("ctc", **ctc_sections()))
    result = train(cfg)
    assert result.exit_code == 0 and result.step == 4
    for entry in result.history["train"]:
        assert math.isfinite(entry["ctc"]) and math.isfinite(entry["hidden"]) and entry["ctc"] > 0
    assert [e["step"] for e in result.history["val"]] == [2, 4]
    final = Path(cfg.run_dir) / "adapter_final"
    model, processor = load_ctc(final)
    assert json.loads((final / "geodistill.json").read_text())["family"] == "ctc"
    assert torch.equal(model.conv1.weight, load_file(final / "model.safetensors")["conv1.weight"])
    assert processor.feature_extractor.feature_size == 80
    with pytest.raises(GeodistillError, match="a CTC student, not a Whisper model"):
        load_whisper(str(cfg.run_dir))  # evaluate / transcribe: a clear refusal, not a confusing one


def test_frozen_teacher_blocks_stay_the_teachers_and_the_rest_trains(make_config):
    sections = ctc_sections(max_steps=2, eval_every=0, save_every=0)
    sections["student"]["ctc"] |= {"frozen_layers": 1, "dropout": 0.5}
    cfg = load_config(make_config("ctc_frozen", **sections))
    teacher, _ = load_whisper(cfg.teacher)
    assert train(cfg).exit_code == 0
    model, _ = load_ctc(Path(cfg.run_dir) / "adapter_final")
    mine, theirs = model.layers[0], teacher.model.encoder.layers[0]
    assert torch.equal(model.conv1.weight, teacher.model.encoder.conv1.weight)
    assert torch.equal(model.conv2.weight, teacher.model.encoder.conv2.weight)
    assert torch.equal(mine.linear1.weight, theirs.fc1.weight)
    assert not torch.equal(model.layers[1].linear1.weight, teacher.model.encoder.layers[1].fc1.weight)
    model.freeze(1)
    model.train()  # frozen blocks keep eval mode: no dropout noise in the teacher's features
    assert not model.layers[0].training and not model.conv1.training and model.layers[1].training
    assert all(not p.requires_grad for p in model.layers[0].parameters()) and model.head.weight.requires_grad


def test_ctc_on_transcripts_only_never_runs_the_teacher(make_config, monkeypatch, tmp_path):
    from geodistill.teacher import outputs

    def refuse(*args, **kwargs):
        raise AssertionError("the teacher ran, but no loss reads it")

    monkeypatch.setattr(outputs.OnlineTeacherEncoder, "__call__", refuse)
    monkeypatch.setattr(outputs.OnlineTeacher, "__call__", refuse)
    sections = ctc_sections(max_steps=2, eval_every=0, save_every=0)
    sections["loss"]["geo_weight"] = 0.0
    cache = tmp_path / "cache"
    result = train(load_config(make_config("ctc_plain", teacher_cache=str(cache), **sections)))
    assert result.exit_code == 0 and all("hidden" not in e for e in result.history["train"])
    assert not cache.exists()  # nothing is taken from the teacher per step: no cache built


def test_train_reads_the_teachers_encoder_states_from_a_cache(make_config, tmp_path):
    sections = ctc_sections(max_steps=2, eval_every=0, save_every=0)
    cfg = load_config(make_config("ctc_cached", teacher_cache=str(tmp_path / "cache"), **sections))
    result = train(cfg)
    assert result.exit_code == 0 and all(math.isfinite(e["hidden"]) for e in result.history["train"])


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def cli_train(config: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "geodistill.cli", "train", "--config", str(config)]
    return subprocess.run(cmd, env=env or ENV, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("frozen", [0, 1], ids=["all-trained", "frozen-block"])
def test_resume_after_kill9_is_bit_identical(make_config, frozen):
    sections = ctc_sections(num_workers=1)  # the collator runs in a worker process
    sections["student"]["ctc"]["frozen_layers"] = frozen  # frozen blocks are re-copied, not checkpointed
    straight = make_config("straight", **sections)
    assert cli_train(straight).returncode == 0
    crashed = make_config("crashed", **sections)
    out = cli_train(crashed, env={**ENV, loop.CRASH_ENV: "2"})
    assert out.returncode == -signal.SIGKILL, out.stdout + out.stderr
    out = cli_train(crashed)
    assert out.returncode == 0 and "resumed from" in out.stdout + out.stderr
    a, b = (Path(load_config(c).run_dir) for c in (straight, crashed))
    for name in ("model.safetensors", "projector.safetensors"):
        ta, tb = load_file(a / "adapter_final" / name), load_file(b / "adapter_final" / name)
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert (a / "training_history.json").read_text() == (b / "training_history.json").read_text()
