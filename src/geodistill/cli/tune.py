"""``geodistill tune --config FILE``: Optuna search over the distillation hyperparameters."""

from __future__ import annotations

import argparse
import json

from geodistill.cli._common import POSITIVE_INT, number, require, warn_amp
from geodistill.config import load_config


def register(sub) -> None:
    q = sub.add_parser("tune", help="Optuna search over the distillation hyperparameters (objective: WER)")
    q.add_argument("--config", required=True)
    q.add_argument("--n-trials", type=POSITIVE_INT, default=None)
    q.add_argument("--storage", default=None, help="Optuna RDB URL, e.g. postgresql://... (default: SQLite)")
    q.add_argument("--study", default=None)
    q.add_argument("--timeout", type=number(float, 0.0, inclusive=False), default=None, help="seconds")
    q.add_argument("--workers", type=POSITIVE_INT, default=1, help="worker processes sharing the study")
    q.add_argument("overrides", nargs="*")
    q.set_defaults(fn=_tune)


def _tune(a: argparse.Namespace) -> int:
    for module in ("optuna", "matplotlib"):  # the study draws its plots after every trial
        require(module, "tune", extra="tune")
    # imported in the handler, after the extras check: --help stays fast (optuna, torch)
    from geodistill.tune import tune  # noqa: PLC0415

    cfg = load_config(a.config, a.overrides)
    warn_amp(cfg)
    best = tune(
        cfg,
        n_trials=a.n_trials,
        storage=a.storage,
        study_name=a.study,
        timeout=a.timeout,
        workers=a.workers,
    )
    print(json.dumps(best, indent=2))
    return 0
