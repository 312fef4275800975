"""`geodistill report` on a CTC run: curves, evaluations, and its frames vs the teacher's encoder states."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from geodistill.data import load_audio, load_spec
from geodistill.report import build_report
from geodistill.report.plots import _curve_panels
from geodistill.students.ctc.model import CTCModel, CTCShape, clip_positions, copy_from_teacher
from geodistill.students.ctc.report import collect_ctc_states
from geodistill.students.states import geodesic_distances
from tests.conftest import make_tiny_whisper
from tests.report.conftest import N_REPORT


@pytest.fixture(scope="module")
def ctc_report(tiny_ctc_run, tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("ctc-report") / "run"
    shutil.copytree(tiny_ctc_run, run)
    index = build_report(run, data=str(tiny_data[0]), n=N_REPORT, device="cpu", eval_max_new_tokens=4)
    return index.parent


def test_the_report_compares_a_ctc_students_frames_with_the_teachers_encoder(ctc_report, tiny_data):
    report = json.loads((ctc_report / "report.json").read_text())
    latent = report["latent"]
    assert "skipped" not in latent and list(latent["sides"]) == ["encoder"]
    assert (
        "Linear 24->32" in latent["sides"]["encoder"] and "CTC student's frames" in latent["sides"]["encoder"]
    )
    assert any("no decoder" in note for note in latent["notes"])
    utts = load_spec(str(tiny_data[0]))[:N_REPORT]
    frames = sum(clip_positions(len(load_audio(u))) for u in utts)  # every frame of each clip (< 150)
    assert (
        latent["distances"]["encoder"]["after"]["n"]
        == latent["distances"]["encoder"]["before"]["n"]
        == frames
    )
    for name in ("training_curves.png", "geodesic_distances.png", "latent_pca.png", "latent_tsne.png"):
        assert (ctc_report / name).is_file()


def test_the_report_evaluates_the_ctc_student_without_a_token_cap(ctc_report):
    report = json.loads((ctc_report / "report.json").read_text())
    teacher, student = report["comparison"]["teacher"], report["comparison"]["student"]
    assert teacher["family"] == "seq2seq" and teacher["max_new_tokens"] == 4
    assert student["family"] == "ctc" and student["max_new_tokens"] is None
    assert student["tokens_per_second"] is None and np.isfinite(student["wer"])
    md = (ctc_report / "report.md").read_text()
    assert "| tokens / s |" in md and "CTC student as its config builds it" in md
    assert "![Training curves](training_curves.png)" in md


@pytest.mark.parametrize("downsample", [1, 3])
def test_frames_pair_with_the_teachers_encoder_states_aligned_as_the_loss_aligns_them(
    tiny_processor, downsample
):
    teacher = make_tiny_whisper(d_model=32, layers=2, heads=2, seed=4)
    shape = CTCShape(n_mels=80, d_model=32, layers=2, heads=2, ffn=64, downsample=downsample, dropout=0.0)
    model = CTCModel(shape).eval()
    copy_from_teacher(model, teacher.model.encoder)  # the teacher's whole encoder (+ a random 3:1 conv)
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (24000, 16000)]
    feats = tiny_processor.feature_extractor(clips, sampling_rate=16000, return_tensors="pt").input_features
    batch = {"input_features": feats, "audio_seconds": torch.tensor([1.5, 1.0]), "ids": ["a", "b"]}
    states = collect_ctc_states(teacher, {"student": (model, None)}, [batch], torch.device("cpu"), "pool")
    counts = [75 // downsample, 50 // downsample]  # every frame of each clip (fewer than 150)
    assert states["student"].owner.tolist() == [0] * counts[0] + [1] * counts[1]
    with (
        torch.no_grad()
    ):  # the teacher at its 30-s window, each student frame's `downsample` positions averaged
        full = teacher.model.encoder(feats).last_hidden_state
    want = [full[b, : n * downsample].reshape(n, downsample, -1).mean(1) for b, n in enumerate(counts)]
    want = torch.nn.functional.normalize(torch.cat(want), dim=-1).numpy()
    np.testing.assert_allclose(states["teacher"].states, want, atol=1e-5)
    if downsample == 1:  # the same weights (only the context differs: the clip vs 30 s): close, and paired
        paired = geodesic_distances(states["student"].states, states["teacher"].states)
        shifted = geodesic_distances(states["student"].states[1:], states["teacher"].states[:-1])
        assert paired.max() < 0.1 and np.median(shifted) > 3 * np.median(paired)


def test_every_loss_a_ctc_run_logs_has_a_training_curve(ctc_report):
    history = json.loads((ctc_report.parent / "training_history.json").read_text())
    logged = {key for entry in history["train"] for key in entry} - {"step", "hidden"}  # hidden = hidden_enc
    drawn = {key for _, keys in _curve_panels("geodesic") for key, _ in keys}
    assert "ctc" in logged and logged <= drawn
