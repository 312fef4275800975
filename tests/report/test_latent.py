"""Pieces of the hidden-state views: distances, pooling, embeddings, projector files, side plans, curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from geodistill.config import Config
from geodistill.errors import ModelLoadError
from geodistill.models.projector import RiemannianProjector
from geodistill.report.latent import embed_pairs
from geodistill.report.plots import training_curves
from geodistill.students.states import SideStates, geodesic_distances, load_projectors, plan_sides


def test_geodesic_distances_are_angles_in_radians():
    a = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 2, 0]], dtype=np.float32)
    b = np.array([[0, 1, 0], [-1, 0, 0], [0.5, math.sqrt(3) / 2, 0], [0, 5, 0]], dtype=np.float32)
    np.testing.assert_allclose(geodesic_distances(a, b), [math.pi / 2, math.pi, math.pi / 3, 0.0], atol=1e-6)


def test_geodesic_distance_of_identical_float32_states_is_zero():
    # acos of a float32 dot product would read ~3e-4 rad here; the report must not show noise as distance.
    x = torch.nn.functional.normalize(torch.randn(50, 384), dim=-1).numpy()
    assert geodesic_distances(x, x.copy()).max() < 1e-7


def test_pooled_states_are_normalised_means_per_utterance():
    states = np.array([[1, 0], [0, 1], [1, 0]], dtype=np.float32)
    pooled = SideStates(states, np.array([0, 0, 1])).pooled()
    np.testing.assert_allclose(pooled, [[math.sqrt(0.5), math.sqrt(0.5)], [1, 0]], atol=1e-6)


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_joint_embedding_of_few_pairs(method):
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((4, 16))
    student = teacher + 0.1 * rng.standard_normal((4, 16))
    t2, s2, note = embed_pairs(method, teacher, student, seed=0)
    assert t2.shape == s2.shape == (4, 2) and np.isfinite(t2).all() and np.isfinite(s2).all()
    assert note  # the parameters used (variance share, perplexity, neighbours) for the caption
    with pytest.raises(ValueError, match="unknown embedding method"):
        embed_pairs("mds", teacher, student)


def test_projector_file_round_trip_and_errors(tmp_path):
    saved = nn.ModuleDict({"decoder": RiemannianProjector(16, 32), "encoder": RiemannianProjector(16, 32)})
    save_file(
        {k: v.contiguous() for k, v in saved.state_dict().items()}, str(tmp_path / "projector.safetensors")
    )
    loaded = load_projectors(tmp_path)
    x = torch.randn(2, 3, 16)
    assert set(loaded) == {"decoder", "encoder"}
    torch.testing.assert_close(loaded["decoder"](x), saved["decoder"](x))
    assert len(load_projectors(tmp_path / "elsewhere")) == 0  # a run without hidden loss saves none

    save_file({"decoder.weight": torch.zeros(2, 2)}, str(tmp_path / "projector.safetensors"))
    with pytest.raises(ModelLoadError, match="unexpected keys"):
        load_projectors(tmp_path)
    (tmp_path / "projector.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelLoadError, match="unreadable projector"):
        load_projectors(tmp_path)


def test_side_plans_follow_the_trained_projectors_and_widths():
    cfg = Config()
    trained = nn.ModuleDict({"decoder": RiemannianProjector(16, 32)})
    plans, notes = plan_sides(cfg, trained, d_student=16, d_teacher=32)
    assert set(plans) == {"decoder"} and "fresh random init" in plans["decoder"].note
    assert plans["decoder"].after is trained["decoder"]
    assert plans["decoder"].before is not trained["decoder"]
    assert any("encoder" in n and "cannot be compared" in n for n in notes)

    same = nn.ModuleDict({"decoder": RiemannianProjector(16, 16)})
    plans, notes = plan_sides(cfg, same, d_student=16, d_teacher=16)
    assert set(plans) == {"decoder", "encoder"} and not notes
    x = torch.randn(3, 16)
    torch.testing.assert_close(plans["decoder"].before(x), torch.nn.functional.normalize(x, dim=-1))
    assert plans["encoder"].after is None and "raw student states" in plans["encoder"].note


def test_training_curves_draw_taid_runs_and_skipped_steps(tmp_path):
    train = [
        {
            "step": s,
            "total": 3 - 0.1 * s,
            "ce": 2.0,
            "taid": 0.5,
            "taid_t": 0.4 + 0.01 * s,
            "kl_weight": 0.1,
            "hidden": 0.3,
            "hidden_dec": 0.3,
            "grad_norm": 1.5,
            "lr": 1e-4,
        }
        for s in range(1, 30)
    ]
    history = {"train": train, "val": [], "skipped": [{"after_step": 7, "ids": ["a"]}]}
    path = training_curves(history, tmp_path / "curves.png", hidden_loss="mse", clip=1.0)
    with Image.open(path) as img:
        assert img.width > 800 and img.height > 500
    empty = training_curves({"train": [], "val": []}, tmp_path / "empty.png")
    assert empty.stat().st_size > 1000


def test_sides_whose_states_coincide_are_explained():
    from geodistill.report.latent import _identical_sides

    zero, some = np.zeros(5), np.array([0.0, 0.2])
    notes = _identical_sides(
        {"encoder": {"before": zero, "after": zero}, "decoder": {"before": zero, "after": some}}
    )
    assert len(notes) == 1 and notes[0].startswith("encoder:") and "coincide" in notes[0]
