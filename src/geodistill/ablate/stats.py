"""Statistics that do not overclaim: mean ± sample standard deviation over seeds, and paired differences
(same seed, so same data order and initialisation) with a Student-t confidence interval."""

from __future__ import annotations

import math
import statistics

CONFIDENCE = 0.95


def mean_std(values: list[float]) -> dict[str, float | int | None]:
    """{"n", "mean", "std"}: std is the sample standard deviation (n - 1), None below two values."""
    n = len(values)
    return {
        "n": n,
        "mean": statistics.fmean(values) if n else None,
        "std": statistics.stdev(values) if n >= 2 else None,
    }


def t_quantile(p: float, dof: int) -> float:
    """The p-quantile of Student's t with ``dof`` degrees of freedom (scipy.stats.t.ppf)."""
    from scipy import stats  # noqa: PLC0415 (optional extra [tune])

    return float(stats.t.ppf(p, dof))


def paired(a: dict[int, float], b: dict[int, float], confidence: float = CONFIDENCE) -> dict:
    """Paired comparison of variant A against B over the seeds both finished (differences A - B).

    Returns {"seeds", "n", "mean_diff", "std_diff", "low", "high", "confidence", "verdict"}; the interval is
    mean ± t(1 - (1 - confidence) / 2, n - 1) * std / sqrt(n). verdict: "within noise" when it includes 0,
    "A lower" / "A higher" otherwise, "too few seeds" below two pairs (no interval).
    """
    seeds = sorted(set(a) & set(b))
    diffs = [a[s] - b[s] for s in seeds]
    out: dict = {"seeds": seeds, "n": len(diffs), "confidence": confidence}
    out.update(mean_diff=statistics.fmean(diffs) if diffs else None, std_diff=None, low=None, high=None)
    if len(diffs) < 2:
        out["verdict"] = "too few seeds"
        return out
    std = statistics.stdev(diffs)
    half = t_quantile(1 - (1 - confidence) / 2, len(diffs) - 1) * std / math.sqrt(len(diffs))
    out.update(std_diff=std, low=out["mean_diff"] - half, high=out["mean_diff"] + half)
    if out["low"] <= 0 <= out["high"]:
        out["verdict"] = "within noise"
    else:
        out["verdict"] = "A lower" if out["high"] < 0 else "A higher"
    return out
