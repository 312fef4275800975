"""Golden constants: each loss on small fixed tensors against a literal computed once from its formula.

The literals were computed in float64 with the plain-``math`` reference functions below (kept here, so a
reader can see where each number comes from, and checked against the literals too). A change to a loss's
definition, to the reference helpers elsewhere, or to both at once shows up as a changed number.
"""

from __future__ import annotations

import math

import pytest
import torch

from geodistill.losses import (
    AdaptiveTAID,
    CrossEntropyLoss,
    GeodesicLoss,
    KLDivergenceLoss,
    MSEHiddenLoss,
    SeedTAID,
)

STUDENT = [[1.0, 2.0, 0.5, -1.0], [0.0, 0.3, 2.5, 1.0], [3.0, -2.0, 0.0, 1.5]]  # logits (L=3, V=4)
TEACHER = [[2.0, 1.0, 0.0, -0.5], [0.5, 0.5, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]]
LABELS = [1, 2, -100]  # the third position is padding
KEPT = (0, 1)
TEMPERATURE = 2.0
SEED_STEP, SEED_TOTAL = 1, 4  # seed TAID lam = 0.1 + 0.8 * 1/4 = 0.3
ADAPTIVE_T = 0.4  # adaptive TAID's t before any update (t_start)
STATES_S = [[1.0, 0.0, 2.0], [0.5, -1.0, 1.0]]  # hidden states (L=2, D=3)
STATES_T = [[2.0, 1.0, 1.0], [-0.5, 1.0, 0.0]]

GOLDEN = {
    "ce": 0.42151541455164043,
    "kl_t2": 0.26259679344818343,
    "seed_taid": 0.02359550331252287,
    "adaptive_taid": 0.04368204975829448,
    "geodesic": 1.581952543277581,
    "mse": 1.5,
    "mse_normalized": 0.6716864163865695,
}


def _softmax(xs: list[float], temperature: float = 1.0) -> list[float]:
    top = max(xs)
    e = [math.exp((x - top) / temperature) for x in xs]
    return [v / sum(e) for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _mean_kept(per_position) -> float:
    return sum(per_position(i) for i in KEPT) / len(KEPT)


def _t2_kl_to(target) -> float:
    """T^2 * mean over kept positions of KL(target(i) || softmax(student_i / T))."""
    q = [_softmax(s, TEMPERATURE) for s in STUDENT]
    return TEMPERATURE**2 * _mean_kept(lambda i: _kl(target(i), q[i]))


def _hidden_mean(per_pair) -> float:
    """Mean over the hidden-state positions of per_pair(student_state, teacher_state)."""
    return sum(per_pair(a, b) for a, b in zip(STATES_S, STATES_T, strict=True)) / len(STATES_S)


def _sq_error(a: list[float], b: list[float]) -> float:
    """Mean over the D elements of (a - b)^2."""
    return sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / len(a)


def _reference() -> dict[str, float]:
    lam = 0.1 + 0.8 * SEED_STEP / SEED_TOTAL
    t = ADAPTIVE_T

    def p(i: int) -> list[float]:
        return _softmax(TEACHER[i], TEMPERATURE)

    def q(i: int) -> list[float]:
        return _softmax(STUDENT[i], TEMPERATURE)

    def mixture(i: int) -> list[float]:
        return [(1 - lam) * b + lam * a for a, b in zip(p(i), q(i), strict=True)]

    def interpolated(i: int) -> list[float]:
        return _softmax(
            [(1 - t) * s + t * z for s, z in zip(STUDENT[i], TEACHER[i], strict=True)], TEMPERATURE
        )

    def arc(a: list[float], b: list[float]) -> float:
        return math.acos(sum(x * y for x, y in zip(_unit(a), _unit(b), strict=True)))

    return {
        "ce": _mean_kept(lambda i: -math.log(_softmax(STUDENT[i])[LABELS[i]])),
        "kl_t2": _t2_kl_to(p),
        "seed_taid": _t2_kl_to(mixture),
        "adaptive_taid": _t2_kl_to(interpolated),
        "geodesic": _hidden_mean(arc),
        "mse": _hidden_mean(_sq_error),
        "mse_normalized": _hidden_mean(lambda a, b: _sq_error(_unit(a), _unit(b))),
    }


def _computed() -> dict[str, float]:
    s, z, labels = torch.tensor([STUDENT]), torch.tensor([TEACHER]), torch.tensor([LABELS])
    a, b = torch.tensor([STATES_S]), torch.tensor([STATES_T])
    return {
        "ce": CrossEntropyLoss()(s, labels).item(),
        "kl_t2": KLDivergenceLoss(TEMPERATURE)(s, z, labels).item(),
        "seed_taid": SeedTAID(TEMPERATURE)(s, z, labels, SEED_STEP, SEED_TOTAL).item(),
        "adaptive_taid": AdaptiveTAID(TEMPERATURE, t_start=ADAPTIVE_T)(s, z, labels).item(),
        "geodesic": GeodesicLoss()(a, b).item(),
        "mse": MSEHiddenLoss()(a, b).item(),
        "mse_normalized": MSEHiddenLoss(normalize=True)(a, b).item(),
    }


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_reference_formula_gives_the_golden_value(name):
    assert _reference()[name] == pytest.approx(GOLDEN[name], rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_loss_matches_the_golden_value(name):
    assert _computed()[name] == pytest.approx(GOLDEN[name], rel=1e-5, abs=1e-7)  # the losses run in fp32


def test_golden_values_are_distinct_and_positive():
    values = list(GOLDEN.values())
    assert all(v > 0 for v in values) and len(set(values)) == len(values)
