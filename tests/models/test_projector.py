"""RiemannianProjector: identity start for equal widths, unit-norm outputs, trainable."""

from __future__ import annotations

import pytest
import torch

from geodistill.errors import GeodistillError
from geodistill.models.projector import RiemannianProjector


def test_identity_init_returns_the_normalised_input():
    proj = RiemannianProjector(6, 6)
    assert torch.equal(proj.linear.weight, torch.eye(6)) and torch.equal(proj.linear.bias, torch.zeros(6))
    x = torch.randn(2, 3, 6) * 4
    assert torch.allclose(proj(x), x / x.norm(dim=-1, keepdim=True), atol=1e-6)


def test_width_change_gives_unit_vectors_and_learns():
    torch.manual_seed(0)
    proj = RiemannianProjector(4, 9)
    assert not torch.allclose(proj.linear.weight[:4], torch.eye(4))  # default init, not an identity
    x = torch.randn(2, 5, 4)
    y = proj(x)
    assert y.shape == (2, 5, 9)
    assert torch.allclose(y.norm(dim=-1), torch.ones(2, 5), atol=1e-6)
    target = torch.nn.functional.normalize(torch.randn(2, 5, 9), dim=-1)
    (1 - (y * target).sum(-1)).mean().backward()
    assert proj.linear.weight.grad is not None and proj.linear.weight.grad.abs().sum() > 0


def test_zero_vector_and_low_precision_stay_finite():
    proj = RiemannianProjector(3, 3)
    assert torch.equal(proj(torch.zeros(1, 1, 3)), torch.zeros(1, 1, 3))
    half = RiemannianProjector(8, 8).to(torch.bfloat16)
    y = half(torch.randn(2, 8, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16 and torch.allclose(y.float().norm(dim=-1), torch.ones(2), atol=1e-2)


def test_bad_dimensions_are_rejected():
    with pytest.raises(GeodistillError, match="RiemannianProjector"):
        RiemannianProjector(0, 4)
