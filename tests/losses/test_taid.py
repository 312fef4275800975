"""TAID: seed (probability mixture, linear lambda) and adaptive (logit interpolation, momentum t)."""

from __future__ import annotations

import io
import math

import pytest
import torch

from geodistill.errors import GeodistillError
from geodistill.losses import AdaptiveTAID, KLDivergenceLoss, SeedTAID, TopKLogits

from .reference import kl, softmax

S = [1.0, 2.0, 0.5, -1.0]
Z = [2.0, 0.0, 1.0, 0.5]


def test_seed_lambda_endpoints_and_middle():
    taid = SeedTAID()
    assert taid.interpolation(0, 1000) == pytest.approx(0.1)
    assert taid.interpolation(500, 1000) == pytest.approx(0.5)
    assert taid.interpolation(1000, 1000) == pytest.approx(0.9)
    assert taid.interpolation(5000, 1000) == pytest.approx(0.9)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_seed_golden(temperature):
    step, total = 250, 1000
    lam = 0.1 + 0.8 * step / total
    q, p = softmax(S, temperature), softmax(Z, temperature)
    target = [(1 - lam) * a + lam * b for a, b in zip(q, p, strict=True)]
    loss = SeedTAID(temperature)(torch.tensor([[S]]), torch.tensor([[Z]]), torch.tensor([[0]]), step, total)
    assert loss.item() == pytest.approx(temperature**2 * kl(target, q), rel=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_adaptive_golden(temperature):
    taid = AdaptiveTAID(temperature, t_start=0.4)
    mixed = [(1 - 0.4) * a + 0.4 * b for a, b in zip(S, Z, strict=True)]
    target, q = softmax(mixed, temperature), softmax(S, temperature)
    loss = taid(torch.tensor([[S]]), torch.tensor([[Z]]), torch.tensor([[0]]))
    assert loss.item() == pytest.approx(temperature**2 * kl(target, q), rel=1e-5)


@pytest.mark.parametrize("make", [lambda: SeedTAID(1.0), lambda: AdaptiveTAID(1.0)], ids=["seed", "adaptive"])
def test_target_is_a_stop_gradient(make):
    # d/ds KL(target || softmax(s)) with a constant target is (softmax(s) - target) / n_tokens.
    taid = make()
    s = torch.tensor([[S]], requires_grad=True)
    taid(s, torch.tensor([[Z]]), torch.tensor([[0]]), 0, 10).backward()
    value = taid.interpolation(0, 10)
    q, p = softmax(S), softmax(Z)
    if isinstance(taid, SeedTAID):
        target = [(1 - value) * a + value * b for a, b in zip(q, p, strict=True)]
    else:
        target = softmax([(1 - value) * a + value * b for a, b in zip(S, Z, strict=True)])
    expected = [a - b for a, b in zip(q, target, strict=True)]
    assert s.grad[0, 0].tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("make", [lambda: SeedTAID(2.0), lambda: AdaptiveTAID(2.0)], ids=["seed", "adaptive"])
def test_taid_all_masked_gives_zero_and_finite_grads(make):
    s = torch.randn(2, 3, 5, requires_grad=True)
    loss = make()(s, torch.randn(2, 3, 5), torch.full((2, 3), -100), 3, 10)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(s.grad).all() and (s.grad == 0).all()


@pytest.mark.parametrize("make", [lambda: SeedTAID(2.0), lambda: AdaptiveTAID(2.0)], ids=["seed", "adaptive"])
def test_taid_with_topk_k_equal_v_matches_full_logits(make):
    torch.manual_seed(0)
    s, z = torch.randn(2, 3, 9), torch.randn(2, 3, 9) * 2
    labels = torch.tensor([[1, 2, -100], [0, 0, 0]])
    vals, idx = z.topk(9, dim=-1)
    topk = TopKLogits(vals, idx, torch.logsumexp(z, -1), lse_temperature=1.0)
    taid = make()
    assert taid(s, topk, labels, 4, 10).item() == pytest.approx(taid(s, z, labels, 4, 10).item(), abs=1e-5)


def test_taid_at_full_teacher_share_is_the_plain_kl():
    s, z, y = torch.tensor([[S]]), torch.tensor([[Z]]), torch.tensor([[0]])
    kl_loss = KLDivergenceLoss(2.0)(s, z, y).item()
    assert SeedTAID(2.0, start=1.0, end=1.0)(s, z, y, 0, 10).item() == pytest.approx(kl_loss, rel=1e-6)
    adaptive = AdaptiveTAID(2.0)
    adaptive.t = 1.0
    assert adaptive(s, z, y).item() == pytest.approx(kl_loss, rel=1e-6)


def _reference_updates(losses, steps, total, t=0.4, alpha=5e-4, beta=0.99):
    """The update rule written out independently: returns t after each loss."""
    m, prev, out = 0.0, None, []
    for loss, step in zip(losses, steps, strict=True):
        if prev is not None:
            m = beta * m + (1 - beta) * (prev - loss) / prev
            t = min(1.0, max(0.4 + 0.6 * step / total, t + alpha * (1 / (1 + math.exp(-m))) * (1 - t)))
        prev = loss
        out.append(t)
    return out


def test_adaptive_t_starts_at_t_start_follows_the_rule_never_decreases_and_stays_below_one():
    taid = AdaptiveTAID(1.0, t_start=0.4, alpha=5e-4, beta=0.99)
    assert taid.t == 0.4
    losses = [5.0, 4.0, 4.5, 3.0, 3.2, 2.0, 9.0, 1.0] * 4
    total = 40
    steps = list(range(1, len(losses) + 1))
    got = [taid.update(loss, step, total) for loss, step in zip(losses, steps, strict=True)]
    assert got == pytest.approx(_reference_updates(losses, steps, total), abs=1e-12)
    assert all(b >= a for a, b in zip([0.4, *got], got, strict=False))
    assert all(v <= 1.0 for v in got)
    assert taid.update(1.0, total, total) == 1.0  # the schedule reaches t_end at the last step
    assert taid.update(0.5, total + 10, total) == 1.0


def test_adaptive_t_moves_faster_than_the_schedule_with_a_large_alpha():
    taid = AdaptiveTAID(1.0, t_start=0.4, alpha=0.5)
    taid.update(2.0, 1, 10_000)
    t = taid.update(1.0, 2, 10_000)  # loss halved: momentum 0.005, sigmoid > 0.5
    assert t == pytest.approx(0.4 + 0.5 * (1 / (1 + math.exp(-0.005))) * 0.6)
    assert t > 0.4 + 0.6 * 2 / 10_000


def test_adaptive_ignores_non_finite_losses():
    taid = AdaptiveTAID()
    taid.update(2.0, 1, 100)
    before = taid.get_extra_state()
    taid.update(float("nan"), 2, 100)
    taid.update(float("inf"), 3, 100)
    assert taid.get_extra_state() == before


def test_adaptive_state_dict_round_trip_resumes_identically():
    losses = [3.0, 2.5, 2.7, 2.0, 1.9, 2.2, 1.5, 1.4]
    first = AdaptiveTAID(2.0, alpha=0.05)
    for step, loss in enumerate(losses[:4], start=1):
        first.update(loss, step, 20)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = AdaptiveTAID(2.0, alpha=0.05)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert (
        resumed.t == first.t and resumed.momentum == first.momentum and resumed.prev_loss == first.prev_loss
    )
    for step, loss in enumerate(losses[4:], start=5):
        assert resumed.update(loss, step, 20) == first.update(loss, step, 20)
    assert resumed.t > 0.4


def test_taid_rejects_bad_settings():
    with pytest.raises(GeodistillError, match="taid_start"):
        AdaptiveTAID(t_start=1.0)
    with pytest.raises(GeodistillError, match="taid_alpha"):
        AdaptiveTAID(alpha=2.0)
    with pytest.raises(GeodistillError, match="taid_beta"):
        AdaptiveTAID(beta=1.0)
    with pytest.raises(GeodistillError, match="start"):
        SeedTAID(start=0.9, end=0.1)
    with pytest.raises(GeodistillError, match="temperature"):
        SeedTAID(temperature=-1.0)
    with pytest.raises(GeodistillError, match="state"):
        AdaptiveTAID().load_state_dict({"_extra_state": {"t": 0.5}})
