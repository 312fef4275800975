"""What a person reads of an ablation, without Optuna: the per-variant table, the paired comparisons as
sentences, ablation.md, and the summary a cell's run folder points to (``geodistill report``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geodistill.ablate.stats import CONFIDENCE

CELL_FILE = "cell.json"  # in each cell's run folder: variant, seed, WERs, final loss parts, train seconds
METRICS = {"val_wer": "validation WER", "test_wer": "test WER"}


def _pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def _pm(stats: dict[str, Any]) -> str:
    if stats["mean"] is None:
        return "n/a"
    std = "" if stats["std"] is None else f" ± {100 * stats['std']:.2f}"
    return f"{100 * stats['mean']:.2f}{std}"


def table_rows(summary: dict[str, Any]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """(header, rows) of the per-variant table; WER in percent, mean ± sample std over seeds."""
    test = any(v["test_wer"]["n"] for v in summary["variants"].values())
    header = ("variant", "seeds done", "val WER % (mean ± std)", "val WER % per seed")
    header += ("test WER % (mean ± std)", "test WER % per seed") if test else ()
    header += ("final loss (total)", "train s (mean)")
    rows = []
    for name, v in summary["variants"].items():
        runs = v["seeds"]
        row = (name, f"{len(runs)}/{len(summary['seeds'])}", _pm(v["val_wer"]))
        row += (", ".join(_pct(r["val_wer"]) for r in runs) or "n/a",)
        if test:
            row += (_pm(v["test_wer"]), ", ".join(_pct(r["test_wer"]) for r in runs) or "n/a")
        totals = [
            r["final_loss"]["total"] for r in runs if r.get("final_loss") and "total" in r["final_loss"]
        ]
        secs = v["train_seconds"]["mean"]
        row += (
            ", ".join(f"{x:.4g}" for x in totals) or "n/a",
            "n/a" if secs is None else f"{secs:.1f}",
        )
        rows.append(row)
    return header, rows


def comparison_lines(summary: dict[str, Any]) -> list[str]:
    """One sentence per paired comparison, in WER points (A - B: negative means A is better)."""
    lines = []
    for c in summary["comparisons"]:
        what = f"{c['a']} vs {c['b']}, {METRICS[c['metric']]} (A - B, points, paired over seeds {c['seeds']})"
        if c["low"] is None:
            diff = "n/a" if c["mean_diff"] is None else f"{100 * c['mean_diff']:+.2f}"
            lines.append(f"{what}: {diff}; too few seeds for an interval (needs >= 2).")
            continue
        verdict = {
            "within noise": "within noise (the interval includes 0)",
            "A lower": f"{c['a']} lower",
            "A higher": f"{c['a']} higher",
        }[c["verdict"]]
        lines.append(
            f"{what}: {100 * c['mean_diff']:+.2f} ± {100 * c['std_diff']:.2f} (std of the differences), "
            f"{int(100 * c['confidence'])}% t-interval [{100 * c['low']:+.2f}, {100 * c['high']:+.2f}]: "
            f"{verdict}."
        )
    return lines


def render_markdown(summary: dict[str, Any]) -> str:
    """ablation.md: the table, the paired comparisons, unfinished cells, and each variant's overrides."""
    header, rows = table_rows(summary)
    done = summary["cells"]
    lines = [
        f"# Ablation {summary['study']}",
        "",
        f"{done['complete']} of {done['total']} cells finished (seeds {summary['seeds']}); WER normalised, "
        "in %; mean ± sample standard deviation over seeds. Same seed = same data order and initialisation.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + " --- |" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "## Paired comparisons",
        "",
        *(f"- {line}" for line in comparison_lines(summary) or ["none yet (needs the variants compared)"]),
        "",
        f"A difference is called within noise when its {int(100 * CONFIDENCE)}% Student-t interval "
        "includes 0; with 3 seeds that interval is wide, so only large effects show.",
        "",
    ]
    for kind in ("running", "failed"):
        if summary[kind]:
            lines += [f"## Cells {kind}", ""]
            lines += [
                f"- {c['variant']}, seed {c['seed']} (trial {c['trial']})"
                + (f": {c['error']}" if "error" in c else "")
                for c in summary[kind]
            ]
            lines.append("")
    lines += ["## Variants", ""]
    for name, v in summary["variants"].items():
        overrides = ", ".join(f"{k}={json.dumps(x)}" for k, x in v["overrides"].items())
        lines.append(f"- {name}: {overrides}")
    return "\n".join(lines) + "\n"


def ablation_of_run(run_dir: Path) -> dict[str, Any] | None:
    """When ``run_dir`` is a cell of an ablation (``<ablation>/trial-<n>/cell.json``): the ablation's
    summary with this cell's variant and seed under "this_cell"; None otherwise."""
    cell_path, summary_path = run_dir / CELL_FILE, run_dir.parent / "ablation.json"
    if not cell_path.is_file() or not summary_path.is_file():
        return None
    try:
        cell, summary = json.loads(cell_path.read_text()), json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return None
    return {
        **summary,
        "this_cell": {k: cell.get(k) for k in ("variant", "seed", "trial")},
        "dir": str(run_dir.parent),
    }
