"""The report's figures, drawn with matplotlib's object API (no pyplot state, Agg canvas) into PNG files."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

DPI = 100
COLUMNS = 3  # panels per row of the training-curve grid
TEACHER_COLOR, STUDENT_COLOR, BEFORE_COLOR = "#1f77b4", "#ff7f0e", "#7f7f7f"


def save_figure(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)  # attaches the Agg canvas: no display, no global pyplot figure list
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    pairs = [(r["step"], r[key]) for r in rows if r.get(key) is not None and "step" in r]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _curve_panels(hidden_loss: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(history key, legend label)]) for every training-curve panel the loop may log."""
    hidden = "geodesic hidden loss (rad)" if hidden_loss == "geodesic" else f"{hidden_loss} hidden loss"
    return [
        ("total loss", [("total", "total")]),
        ("cross-entropy (reference labels)", [("ce", "CE")]),
        ("CTC (reference characters)", [("ctc", "CTC")]),
        ("KL·T² (teacher soft labels)", [("kl", "KL")]),
        ("TAID loss", [("taid", "TAID")]),
        (hidden, [("hidden_dec", "decoder"), ("hidden_enc", "encoder")]),
        ("learning rate", [("lr", "lr")]),
        ("KL weight λ_KL", [("kl_weight", "λ_KL")]),
        ("TAID interpolation t", [("taid_t", "t")]),
        ("gradient norm (before clipping)", [("grad_norm", "‖g‖")]),
    ]


def _plot_lines(ax: Axes, lines: list[tuple[str, list[float], list[float]]], title: str) -> None:
    for label, xs, ys in lines:
        ax.plot(xs, ys, label=label, marker="o" if len(xs) < 25 else None, markersize=3, linewidth=1.3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8)


def training_curves(
    history: dict, path: Path, hidden_loss: str = "geodesic", clip: float | None = None
) -> Path:
    """One panel per logged quantity (loss parts, lr, KL weight, TAID t, grad norm) + validation WER/CER."""
    train = history.get("train", [])
    panels = []
    for title, keys in _curve_panels(hidden_loss):
        lines = [(label, *_series(train, key)) for key, label in keys]
        lines = [line for line in lines if line[1]]
        if lines:
            panels.append((title, lines))
    val = history.get("val", [])
    val_lines = [
        (label, xs, [100 * y for y in ys])
        for key, label in (("wer", "WER (normalised)"), ("wer_raw", "WER (raw)"), ("cer", "CER"))
        for xs, ys in [_series(val, key)]
    ]
    val_lines = [line for line in val_lines if line[1]]
    if val_lines:
        panels.append(("validation error rate (%)", val_lines))
    n = max(len(panels), 1)
    rows = math.ceil(n / COLUMNS)
    fig = Figure(figsize=(4.2 * COLUMNS, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, COLUMNS, squeeze=False).ravel()
    for ax, (title, lines) in zip(axes, panels, strict=False):
        _plot_lines(ax, lines, title)
        if title.startswith("gradient norm") and clip is not None:
            ax.axhline(clip, color="red", linestyle=":", linewidth=1, label=f"clip {clip:g}")
            ax.legend(fontsize=8)
    skipped = [s.get("after_step") for s in history.get("skipped", []) if s.get("after_step") is not None]
    if panels and skipped:
        for step in skipped:
            axes[0].axvline(step, color="red", alpha=0.4, linestyle=":", linewidth=1)
        axes[0].set_title(f"total loss ({len(skipped)} non-finite steps skipped, dotted)", fontsize=10)
    if not panels:
        axes[0].text(0.5, 0.5, "no training steps logged", ha="center", va="center")
    for ax in axes[len(panels) or 1 :]:
        ax.set_visible(False)
    return save_figure(fig, path)


def distance_histograms(distances: dict[str, dict[str, np.ndarray]], path: Path) -> Path:
    """Overlaid histograms of per-position geodesic distances (rad), one panel per side.

    ``distances``: {"decoder"/"encoder": {"before": (N,), "after": (N,)}}; medians drawn as dashed lines.
    """
    sides = list(distances) or ["decoder"]
    fig = Figure(figsize=(6.0 * len(sides), 3.8), layout="constrained")
    axes = fig.subplots(1, len(sides), squeeze=False).ravel()
    for ax, side in zip(axes, sides, strict=True):
        runs = {k: v for k, v in distances.get(side, {}).items() if v is not None and len(v)}
        if not runs:
            ax.text(0.5, 0.5, "no distances", ha="center", va="center")
            continue
        top = max(float(np.max(v)) for v in runs.values())
        bins = np.linspace(0.0, max(top, 1e-3) * 1.05, 40)
        for key, color in (("before", BEFORE_COLOR), ("after", STUDENT_COLOR)):
            if key not in runs:
                continue
            med = float(np.median(runs[key]))
            label = f"{'initial' if key == 'before' else 'trained'} student (median {med:.3f})"
            ax.hist(runs[key], bins=bins, alpha=0.55, color=color, label=label)
            ax.axvline(med, color=color, linestyle="--", linewidth=1.5)
        unit = "token" if side == "decoder" else "frame"
        ax.set_title(f"{side}: geodesic distance to the teacher per {unit}", fontsize=10)
        ax.set_xlabel("acos(cos) between projected student and teacher state (rad)", fontsize=8)
        ax.set_ylabel(f"{unit}s", fontsize=8)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


@dataclass(frozen=True)
class MapPanel:
    """One panel of a latent map: 2-D points of teacher and student, row i of each being a pair."""

    title: str  # e.g. "decoder, per token"
    teacher: np.ndarray | None = None  # (N, 2)
    student: np.ndarray | None = None  # (N, 2)
    note: str = ""  # shown instead of points when they are None, else under the title


def _draw_pairs(ax: Axes, panel: MapPanel) -> None:
    t, s = panel.teacher, panel.student
    many = len(t) > 200
    segments = np.stack([t, s], axis=1)
    ax.add_collection(
        LineCollection(
            segments, colors="#999999", linewidths=0.4 if many else 0.8, alpha=0.25 if many else 0.6, zorder=1
        )
    )
    size = 6 if many else 22
    ax.scatter(t[:, 0], t[:, 1], s=size, c=TEACHER_COLOR, label="teacher", zorder=2, edgecolors="none")
    ax.scatter(s[:, 0], s[:, 1], s=size, c=STUDENT_COLOR, label="student", zorder=3, edgecolors="none")
    ax.legend(fontsize=8, loc="best")


def latent_map(method: str, panels: list[MapPanel], path: Path) -> Path:
    """A grid (2 columns) of teacher/student point clouds in one joint 2-D embedding per panel."""
    rows = math.ceil(len(panels) / 2)
    fig = Figure(figsize=(11.0, 5.0 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        ax.set_title(
            panel.title + (f"\n{panel.note}" if panel.note and panel.teacher is not None else ""), fontsize=10
        )
        if panel.teacher is None or panel.student is None:
            ax.text(0.5, 0.5, panel.note or "not available", ha="center", va="center", wrap=True, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        _draw_pairs(ax, panel)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.2)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(f"{method}: teacher vs student hidden states, one joint embedding (grey lines join pairs)")
    return save_figure(fig, path)
