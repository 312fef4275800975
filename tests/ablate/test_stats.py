"""Mean ± std over seeds and the paired t-interval, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from geodistill.ablate import mean_std, paired


def test_mean_and_sample_std_over_seeds():
    assert mean_std([0.1, 0.2, 0.3]) == pytest.approx({"n": 3, "mean": 0.2, "std": 0.1})
    assert mean_std([0.25]) == {"n": 1, "mean": 0.25, "std": None}  # no spread from one seed
    assert mean_std([]) == {"n": 0, "mean": None, "std": None}


def test_paired_interval_uses_the_t_quantile_and_says_within_noise_when_it_holds_zero():
    a = {0: 0.30, 1: 0.22, 2: 0.40}
    b = {0: 0.29, 1: 0.20, 2: 0.37, 9: 0.5}  # seed 9 has no partner: left out
    out = paired(a, b)
    assert out["seeds"] == [0, 1, 2] and out["n"] == 3
    assert out["mean_diff"] == pytest.approx(0.02) and out["std_diff"] == pytest.approx(0.01)
    half = 4.302652729911275 * 0.01 / math.sqrt(3)  # t(0.975, 2 dof)
    assert (out["low"], out["high"]) == pytest.approx((0.02 - half, 0.02 + half))
    assert out["verdict"] == "within noise"  # [-0.0048, +0.0448] holds 0 although every difference is > 0


def test_verdicts():
    assert paired({0: 0.1, 1: 0.3}, {0: 0.2, 1: 0.2})["verdict"] == "within noise"
    lower = paired({0: 0.10, 1: 0.11, 2: 0.12}, {0: 0.20, 1: 0.20, 2: 0.22})
    assert lower["verdict"] == "A lower" and lower["high"] < 0
    one = paired({0: 0.1}, {0: 0.2})
    assert (
        one["verdict"] == "too few seeds" and one["low"] is None and one["mean_diff"] == pytest.approx(-0.1)
    )
