"""``geodistill ablate --config FILE``: a grid of (loss variant, seed) runs, WER mean ± std per variant."""

from __future__ import annotations

import argparse
import json

from geodistill.cli._common import POSITIVE_INT, require, warn_amp
from geodistill.config import load_config


def register(sub) -> None:
    q = sub.add_parser(
        "ablate", help="loss ablation: a grid of (variant, seed) training runs, WER mean ± std per variant"
    )
    q.add_argument("--config", required=True)
    q.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="variant names to run (default: ce ce+kl ce+kl+mse ce+kl+geo ce+kl+geo+taid kl+geo, then "
        "the config's ablate.variants)",
    )
    q.add_argument("--seeds", type=POSITIVE_INT, default=None, help="seeds per variant (default 3)")
    q.add_argument("--test", default=None, help="data spec: each cell's final student is scored on it")
    q.add_argument("--storage", default=None, help="Optuna RDB URL, e.g. postgresql://... (default: SQLite)")
    q.add_argument("--study", default=None)
    q.add_argument("--workers", type=POSITIVE_INT, default=1, help="worker processes sharing the study")
    q.add_argument("overrides", nargs="*")
    q.set_defaults(fn=_ablate)


def _ablate(a: argparse.Namespace) -> int:
    for module in ("optuna", "matplotlib", "scipy"):  # ablation.png after every cell; t-intervals
        require(module, "ablate", extra="tune")
    # imported in the handler, after the extras check: --help stays fast (optuna, torch)
    from geodistill.ablate import ablate  # noqa: PLC0415

    # `--variants a b key=value`: argparse hands the overrides after --variants to it
    overrides = [*a.overrides, *(v for v in a.variants or [] if "=" in v)]
    names = [v for v in a.variants or [] if "=" not in v]
    flags = [f"ablate.run={json.dumps(names)}"] if names else []
    flags += [f"ablate.seeds={a.seeds}"] if a.seeds is not None else []
    flags += [f"ablate.test={json.dumps(a.test)}"] if a.test is not None else []
    cfg = load_config(a.config, [*overrides, *flags])
    warn_amp(cfg)
    summary = ablate(cfg, storage=a.storage, study_name=a.study, workers=a.workers)
    print(
        f"{summary['cells']['complete']} of {summary['cells']['total']} cells finished; see "
        f"{cfg.run_dir}/ablation.md"
    )
    return 0
