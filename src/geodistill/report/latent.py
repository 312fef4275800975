"""Latent-space views: teacher vs student hidden states in joint PCA / t-SNE / UMAP maps, and the
per-position geodesic distance before and after training.

Teacher and student points of one panel are embedded together (one fit on the stacked rows), so their
relative positions mean something; pairs (same utterance and position) are joined with a line.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from geodistill.models import load_whisper
from geodistill.progress import progress
from geodistill.report.plots import MapPanel, distance_histograms, latent_map
from geodistill.report.runinfo import RunInfo
from geodistill.students import family_of_folder
from geodistill.students.states import (
    SIDES,
    SideStates,
    geodesic_distances,
    make_batches,
    report_utterances,
)

log = logging.getLogger("geodistill")

METHODS = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}  # file stem -> title
MAX_MAP_PAIRS = 1000  # per-token pairs drawn per panel (evenly spaced subset): t-SNE/UMAP cost and legibility
IDENTICAL_RAD = 1e-6  # below this every pair is the same state (float32 rounding is ~1e-8 rad)
MIN_POINTS = 5  # fewer joint points than this: t-SNE/UMAP have no neighbourhoods to speak of


def embed_pairs(method: str, teacher: np.ndarray, student: np.ndarray, seed: int = 0):
    """One joint 2-D embedding of teacher (N, D) and student (N, D) rows -> ((N, 2), (N, 2), note)."""
    joint = np.concatenate([teacher, student]).astype(np.float64)
    m = len(joint)
    if method == "pca":
        from sklearn.decomposition import PCA  # noqa: PLC0415 (optional extra [report])

        pca = PCA(n_components=2, random_state=seed)
        points = pca.fit_transform(joint)
        note = "PC1 {:.0%}, PC2 {:.0%} of the variance".format(*pca.explained_variance_ratio_)
    elif method == "tsne":
        from sklearn.manifold import TSNE  # noqa: PLC0415 (optional extra [report])

        perplexity = float(min(30.0, max(1.0, (m - 1) / 3)))  # must stay below the number of points
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
            joint
        )
        note = f"perplexity {perplexity:.3g}"
    elif method == "umap":
        import umap  # noqa: PLC0415 (optional extra [report])

        neighbours = int(max(2, min(15, m - 1)))
        # PCA init: spectral init fails on the tiny, often disconnected neighbour graphs of small reports.
        reducer = umap.UMAP(n_neighbors=neighbours, n_components=2, init="pca", random_state=seed, n_jobs=1)
        points = reducer.fit_transform(joint)
        note = f"n_neighbors {neighbours}"
    else:
        raise ValueError(f"unknown embedding method {method!r} (one of {', '.join(METHODS)})")
    points = np.asarray(points, dtype=np.float64)
    return points[: len(teacher)], points[len(teacher) :], note


def _spaced(n: int, cap: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, cap)).round().astype(int)) if n else np.zeros(0, dtype=int)


def _panel_points(teacher: SideStates, student: SideStates, level: str) -> tuple[np.ndarray, np.ndarray]:
    if level == "pooled":
        return teacher.pooled(), student.pooled()
    idx = _spaced(len(teacher.states), MAX_MAP_PAIRS)
    return teacher.states[idx], student.states[idx]


def _panel(
    method: str, side: str, level: str, teacher: SideStates, student: SideStates, seed: int
) -> MapPanel:
    unit = "token" if side == "decoder" else "frame"
    title = f"{side}, " + ("mean per utterance" if level == "pooled" else f"per {unit}")
    t, s = _panel_points(teacher, student, level)
    if method != "pca" and 2 * len(t) < MIN_POINTS:
        return MapPanel(title, note=f"{2 * len(t)} points: too few for {METHODS[method]}")
    te, se, note = embed_pairs(method, t, s, seed)
    return MapPanel(title, te, se, note=f"{len(t)} pairs, {note}")


def _distance_summary(values: np.ndarray) -> dict:
    return {
        "median": float(np.median(values)),
        "mean": float(np.mean(values)),
        "p90": float(np.percentile(values, 90)),
        "n": int(len(values)),
    }


def draw_maps(
    teacher: dict[str, SideStates], student: dict[str, SideStates], out_dir: Path, seed: int = 0
) -> dict[str, dict]:
    """latent_<method>.png for each method: rows = sides, columns = per utterance / per position."""
    images = {}
    cells = [(side, level) for side in SIDES if side in teacher for level in ("pooled", "tokens")]
    bar = progress(total=len(METHODS) * len(cells), desc="latent maps", unit="map")
    for method, name in METHODS.items():
        panels = []
        for side, level in cells:
            panels.append(_panel(method, side, level, teacher[side], student[side], seed))
            bar.update(1)
        path = latent_map(name, panels, out_dir / f"latent_{method}.png")
        images[method] = {
            "file": path.name,
            "title": name,
            "panels": [f"{p.title}: {p.note}" for p in panels],
        }
    bar.close()
    return images


def _identical_sides(distances: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """Notes for sides where student and teacher states coincide, so the overlapping points are explained."""
    return [
        f"{side}: the student's states equal the teacher's before and after training (e.g. a frozen copy of "
        f"the teacher's {side} with no {side} projector), so their points coincide"
        for side, d in distances.items()
        if max(float(np.max(v, initial=0.0)) for v in d.values()) < IDENTICAL_RAD
    ]


def _student_provenance(student_dir: Path) -> dict:
    path = student_dir / "geodistill.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def latent_section(
    info: RunInfo, data: str | None, n: int, device: torch.device, out_dir: Path, seed: int = 0
) -> tuple[dict, list]:
    """Collect states of teacher, initial and trained student on ``n`` utterances; draw maps + histograms.

    The sides compared are the student family's (``report_sides``: a CTC student's frames against the
    teacher's encoder states).
    Returns (the numbers and file names the report shows, the utterances used).
    """
    cfg = info.cfg
    teacher, processor = load_whisper(cfg.teacher, device=str(device))
    utts, described = report_utterances(cfg, data)
    batches, used = make_batches(cfg, utts, processor, teacher, n)
    family = family_of_folder(info.student_dir)
    sides, notes = family.report_sides(cfg, info.student_dir, teacher, processor, batches, device)
    for side, c in list(sides.items()):
        if not c.after.states.shape == c.before.states.shape == c.teacher.states.shape:
            notes.append(f"{side}: student and teacher give different position counts; side skipped")
            sides.pop(side)
    distances = {
        side: {
            "before": geodesic_distances(c.before.states, c.teacher.states),
            "after": geodesic_distances(c.after.states, c.teacher.states),
        }
        for side, c in sides.items()
    }
    notes += _identical_sides(distances)
    hist = distance_histograms(distances, out_dir / "geodesic_distances.png") if distances else None
    maps = (
        draw_maps(
            {s: c.teacher for s, c in sides.items()}, {s: c.after for s, c in sides.items()}, out_dir, seed
        )
        if sides
        else {}
    )
    section = {
        "data": described,
        "utterances": [u.id for u in used],
        "student_dir": str(info.student_dir),
        "student_provenance": _student_provenance(info.student_dir),
        "sides": {side: c.note for side, c in sides.items()},
        "notes": notes,
        "distances": {side: {k: _distance_summary(v) for k, v in d.items()} for side, d in distances.items()},
        "distance_image": hist.name if hist is not None else None,
        "maps": maps,
    }
    return section, used
