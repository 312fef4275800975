"""The ablation folder's summary: ablation.json, ablation.md and ablation.png, refreshed after every cell
(atomically: several workers write them). Every number comes from the cells' ``cell.json`` records, which
the trials also store as their ``cell`` user attribute."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from geodistill.ablate.stats import mean_std, paired
from geodistill.ablate.view import METRICS, render_markdown
from geodistill.config import Config
from geodistill.tune.outputs import write_atomic

GRID_ATTR = "ablation_grid"  # the study's user attribute recording its variants and seeds
FILES = ("ablation.json", "ablation.md", "ablation.png")
# (A, B): is A's WER lower than B's, seed by seed? The question the ablation exists to answer.
# the thesis' comparisons: geodesic vs MSE at the same weight, and vs no hidden loss (Whisper; CTC students)
COMPARISONS = (("ce+kl+geo", "ce+kl+mse"), ("ce+kl+geo", "ce+kl"), ("ce+geo", "ce+mse"), ("ce+geo", "ce"))


def cell_key(params: dict[str, Any]) -> tuple[str, int]:
    return str(params["variant"]), int(params["seed"])


def _cells(study: optuna.Study) -> dict[tuple[str, int], dict[str, Any]]:
    """The finished cells' records, the earliest complete trial of each cell."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and "cell" in t.user_attrs:
            out.setdefault(cell_key(t.params), t.user_attrs["cell"])
    return out


def _missing(study: optuna.Study, done: set[tuple[str, int]]) -> dict[str, list[dict[str, Any]]]:
    """Cells not finished: {"running": [...], "failed": [{variant, seed, trial, error}]}."""
    running, failed = [], []
    for t in study.get_trials(deepcopy=False):
        if "variant" not in t.params or cell_key(t.params) in done:
            continue
        entry = {"variant": t.params["variant"], "seed": t.params["seed"], "trial": t.number}
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            running.append(entry)
        elif t.state == TrialState.FAIL:
            failed.append({**entry, "error": t.user_attrs.get("error", "no error recorded")})
    return {"running": running, "failed": failed}


def summarize(study: optuna.Study, storage_label: str) -> dict[str, Any]:
    """ablation.json's content: per variant mean ± std and every seed's numbers; the paired comparisons."""
    grid = study.user_attrs.get(GRID_ATTR, {"variants": {}, "seeds": []})
    cells = _cells(study)
    variants = {}
    for name, overrides in grid["variants"].items():
        runs = [cells[(name, s)] for s in grid["seeds"] if (name, s) in cells]
        entry: dict[str, Any] = {"overrides": overrides, "seeds": runs}
        for key in (*METRICS, "train_seconds"):
            values = [r[key] for r in runs if r.get(key) is not None]
            entry[key] = mean_std(values)
        variants[name] = entry
    return {
        "study": study.study_name,
        "storage": storage_label,
        "seeds": grid["seeds"],
        "cells": {"total": len(grid["variants"]) * len(grid["seeds"]), "complete": len(cells)},
        **_missing(study, set(cells)),
        "variants": variants,
        "comparisons": _comparisons(variants),
    }


def _by_seed(entry: dict[str, Any], metric: str) -> dict[int, float]:
    return {r["seed"]: r[metric] for r in entry["seeds"] if r.get(metric) is not None}


def _comparisons(variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for a, b in COMPARISONS:
        if a not in variants or b not in variants:
            continue
        for metric in METRICS:
            x, y = _by_seed(variants[a], metric), _by_seed(variants[b], metric)
            if x and y:
                out.append({"a": a, "b": b, "metric": metric, **paired(x, y)})
    return out


def plot(summary: dict[str, Any]) -> bytes:
    """ablation.png: WER per variant, every seed a dot, the mean ± std as a bar (one panel per metric)."""

    import matplotlib  # noqa: PLC0415 (optional extra [tune/report])

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (optional extra [tune/report])

    names = list(summary["variants"])
    metrics = [m for m in METRICS if any(v[m]["n"] for v in summary["variants"].values())] or ["val_wer"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(1.6 * len(names) + 2, 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for i, name in enumerate(names):
            v = summary["variants"][name]
            values = [100 * r[metric] for r in v["seeds"] if r.get(metric) is not None]
            offsets = [(j - (len(values) - 1) / 2) * 0.08 for j in range(len(values))]
            ax.scatter([i + o for o in offsets], values, color="tab:blue", zorder=3, s=22)
            if v[metric]["mean"] is not None:
                std = 100 * (v[metric]["std"] or 0.0)
                ax.errorbar(i + 0.25, 100 * v[metric]["mean"], yerr=std, fmt="_", color="black", capsize=4)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_ylabel(f"{METRICS[metric]} (%)")
        ax.set_title(f"{METRICS[metric]}: seeds (dots), mean ± std (bar)")
        ax.grid(axis="y", alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def write_ablation(study: optuna.Study, cfg: Config, study_dir: Path, storage_label: str) -> dict[str, Any]:
    """Refresh ablation.json, ablation.md and ablation.png; returns ablation.json's content."""
    summary = summarize(study, storage_label)
    summary["steps"] = cfg.tune.steps or cfg.train.max_steps
    summary["test_data"] = cfg.ablate.test
    write_atomic(study_dir / "ablation.json", (json.dumps(summary, indent=2) + "\n").encode())
    write_atomic(study_dir / "ablation.md", render_markdown(summary).encode())
    write_atomic(study_dir / "ablation.png", plot(summary))
    return summary
