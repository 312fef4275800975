"""The study folder's summary files: best_params.json, trials.csv and the three plots, refreshed after
every trial (atomically: several workers write them)."""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from geodistill.tune.storage import budget_used

OBJECTIVE = "final validation WER (normalised), minimised"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically: several workers refresh the same summary files, so each
    writes its own temporary file, then renames it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _importance_skip(complete: list[FrozenTrial]) -> str | None:
    if len(complete) < 2:
        return f"needs >= 2 complete trials, the study has {len(complete)}"
    names = {name for t in complete for name in t.params}
    varying = [n for n in names if len({repr(t.params.get(n)) for t in complete}) > 1]
    if len(varying) < 2:
        return f"needs > 1 parameter that varies across complete trials, found {len(varying)}"
    if len({t.value for t in complete}) < 2:
        return "every complete trial has the same value: nothing for the parameters to explain"
    return None


def write_plots(study: optuna.Study, study_dir: Path) -> dict[str, str]:
    """The three PNG plots (matplotlib, Agg); returns {file: "written" | "skipped: <why>"}."""

    import matplotlib  # noqa: PLC0415 (optional extra [tune/report])

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 (optional extra [tune/report])
    from optuna.visualization import matplotlib as om  # noqa: PLC0415 (imports pyplot: after the Agg backend)

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    plans = {
        "optimization_history.png": (
            om.plot_optimization_history,
            None if complete else "no complete trial yet",
        ),
        "param_importances.png": (om.plot_param_importances, _importance_skip(complete)),
        "intermediate_values.png": (
            om.plot_intermediate_values,
            None
            if any(t.intermediate_values for t in trials)
            else "no trial has reported a validation WER yet",
        ),
    }
    notes = {}
    for name, (plot, skip) in plans.items():
        if skip is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    fig = plot(study).figure
            except (ValueError, RuntimeError) as exc:  # degenerate data; the study itself is fine
                skip = str(exc)
            else:
                buf = io.BytesIO()
                fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
                plt.close(fig)
                write_atomic(study_dir / name, buf.getvalue())
        if skip is not None:
            (study_dir / name).unlink(missing_ok=True)  # an older picture would contradict the note
        notes[name] = "written" if skip is None else f"skipped: {skip}"
    return notes


def write_outputs(study: optuna.Study, study_dir: Path, storage_label: str) -> dict[str, Any]:
    """Refresh best_params.json, trials.csv and the plots; returns best_params.json's content."""
    trials = study.get_trials(deepcopy=False)
    try:
        best: FrozenTrial | None = study.best_trial
    except ValueError:  # no complete trial yet
        best = None
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in TrialState}
    summary = {
        "study": study.study_name,
        "storage": storage_label,
        "objective": OBJECTIVE,
        "params": best.params if best else {},
        "value": best.value if best else None,
        "trial": best.number if best else None,
        "run_dir": best.user_attrs.get("run_dir") if best else None,
        "host": best.user_attrs.get("host") if best else None,
        "trials": {"counted": budget_used(trials), "total": len(trials), **counts},
        "plots": write_plots(study, study_dir),
    }
    write_atomic(study_dir / "best_params.json", (json.dumps(summary, indent=2) + "\n").encode())
    write_atomic(study_dir / "trials.csv", study.trials_dataframe().to_csv(index=False).encode())
    return summary
