"""Geodesic and MSE hidden-state losses, and temporal alignment of encoder frames."""

from __future__ import annotations

import math

import pytest
import torch

from geodistill.errors import GeodistillError
from geodistill.losses import GeodesicLoss, MSEHiddenLoss, align_frames

EPS = 1e-7


def test_geodesic_golden():
    student = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]])
    teacher = torch.tensor([[[0.0, 3.0], [2.0, 0.0], [0.0, 1.0]]])
    mask = torch.tensor([[True, True, False]])
    expected = (math.pi / 2 + math.pi / 4) / 2  # 90 and 45 degrees; the third position is masked
    assert GeodesicLoss(EPS)(student, teacher, mask).item() == pytest.approx(expected, abs=1e-6)


def test_geodesic_golden_without_mask_in_three_dimensions():
    a = [1.0, 2.0, 2.0]
    b = [2.0, -1.0, 0.5]
    cos = sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))
    loss = GeodesicLoss(EPS)(torch.tensor([[a]]), torch.tensor([[b]]))
    assert loss.item() == pytest.approx(math.acos(cos), abs=1e-6)


def test_geodesic_is_scale_invariant():
    torch.manual_seed(0)
    a, b = torch.randn(2, 4, 8), torch.randn(2, 4, 8)
    assert GeodesicLoss()(a * 7.0, b * 0.1).item() == pytest.approx(GeodesicLoss()(a, b).item(), abs=1e-6)


@pytest.mark.parametrize("sign, expected", [(1.0, 0.0), (-1.0, math.pi)])
def test_geodesic_equal_and_opposite_vectors_with_finite_gradients_at_the_clamp(sign, expected):
    torch.manual_seed(1)
    a = torch.randn(2, 3, 16, requires_grad=True)
    b = (sign * a.detach()).clone().requires_grad_(True)
    loss = GeodesicLoss(EPS)(a, b)
    loss.backward()
    # The clamp keeps acos off +-1: the floor is acos(1 - eps) ~ sqrt(2 eps) (fp32 rounds 1 - 1e-7 down).
    assert loss.item() == pytest.approx(expected, abs=1e-3)
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_geodesic_gradient_is_finite_and_nonzero_just_inside_the_clamp():
    a = torch.tensor([[[1.0, 0.0]]], requires_grad=True)
    b = torch.tensor([[[1.0, 1e-2]]])  # angle 0.01 rad: cos well inside [-1 + eps, 1 - eps]
    loss = GeodesicLoss(EPS)(a, b)
    loss.backward()
    # acos near 1 magnifies fp32 rounding of the cosine (~6e-8 / sin(0.01)): a 1e-3 relative tolerance.
    assert loss.item() == pytest.approx(math.atan(1e-2), rel=1e-3)
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_fn", [GeodesicLoss(), MSEHiddenLoss(), MSEHiddenLoss(normalize=True)])
def test_hidden_losses_all_masked_give_zero_and_finite_grads(loss_fn):
    a = torch.randn(2, 3, 4, requires_grad=True)
    loss = loss_fn(a, torch.randn(2, 3, 4), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(a.grad).all() and (a.grad == 0).all()


def test_mse_golden():
    student = torch.tensor([[[1.0, 2.0], [0.0, 0.0]], [[3.0, -1.0], [5.0, 5.0]]])
    teacher = torch.tensor([[[0.0, 2.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True], [True, False]])
    # per position: mean over D of squared differences
    expected = ((1 + 0) / 2 + (1 + 1) / 2 + (4 + 4) / 2) / 3
    assert MSEHiddenLoss()(student, teacher, mask).item() == pytest.approx(expected, abs=1e-6)


def test_mse_normalised_is_the_chord_of_the_geodesic():
    a, b = [3.0, 4.0], [0.0, 2.0]  # unit vectors (0.6, 0.8) and (0, 1): cos = 0.8
    loss = MSEHiddenLoss(normalize=True)(torch.tensor([[a]]), torch.tensor([[b]]))
    assert loss.item() == pytest.approx((2 - 2 * 0.8) / 2, abs=1e-6)


def test_hidden_shape_mismatch_is_a_clear_error():
    with pytest.raises(GeodistillError, match="RiemannianProjector"):
        GeodesicLoss()(torch.zeros(1, 2, 4), torch.zeros(1, 2, 6))
    with pytest.raises(GeodistillError, match="mask"):
        MSEHiddenLoss()(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.ones(1, 3, dtype=torch.bool))


# ---- align_frames ---------------------------------------------------------------------------------------


def _ramp(n: int) -> torch.Tensor:
    """(1, n, 2): frame i holds (i, -i)."""
    t = torch.arange(n, dtype=torch.float32)
    return torch.stack([t, -t], dim=-1).unsqueeze(0)


def test_pool_exact_multiple_averages_non_overlapping_windows():
    out = align_frames(_ramp(6), 2, "pool")  # kernel = stride = 3
    assert out.tolist() == [[[1.0, -1.0], [4.0, -4.0]]]


def test_pool_whisper_encoder_3_to_1():
    states = torch.randn(2, 1500, 8)
    out = align_frames(states, 500, "pool")
    assert out.shape == (2, 500, 8)
    assert torch.allclose(out[:, 7], states[:, 21:24].mean(1), atol=1e-6)


def test_pool_non_multiple_uses_adaptive_windows():
    # adaptive windows over 7 frames -> 3: [0, 3), [2, 5), [4, 7)
    out = align_frames(_ramp(7), 3, "pool")
    assert out[0, :, 0].tolist() == pytest.approx([1.0, 3.0, 5.0])


def test_interpolate_is_linear_along_time():
    out = align_frames(_ramp(6), 3, "interpolate")
    # half-pixel centres: output frame j samples input position (j + 0.5) * 2 - 0.5
    assert out[0, :, 0].tolist() == pytest.approx([0.5, 2.5, 4.5])
    up = align_frames(_ramp(3), 6, "interpolate")
    assert up.shape == (1, 6, 2)
    assert up[0, :, 0].tolist() == pytest.approx([0.0, 0.25, 0.75, 1.25, 1.75, 2.0])


@pytest.mark.parametrize("method", ["pool", "interpolate"])
def test_equal_frame_counts_are_unchanged(method):
    states = torch.randn(2, 5, 3)
    assert align_frames(states, 5, method) is states


def test_align_frames_errors():
    with pytest.raises(GeodistillError, match="interpolate"):
        align_frames(_ramp(3), 6, "pool")
    with pytest.raises(GeodistillError, match="encoder_align"):
        align_frames(_ramp(3), 2, "conv")
    with pytest.raises(GeodistillError, match="n_frames"):
        align_frames(_ramp(3), 0, "pool")
