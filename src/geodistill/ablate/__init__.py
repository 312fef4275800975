"""``geodistill ablate``: does each loss term earn its place? A grid over (loss variant, seed), each cell an
ordinary training run, as an Optuna study run by ``tune``'s machinery (storage, shared teacher cache,
workers, PostgreSQL, heartbeat retry, exact budget) with a grid sampler.

    <ablation folder = cfg.run_dir>/
      optuna.db  study.json  tune.log  teacher_cache/     as for `geodistill tune`
      trial-<n>/            cell n's run folder, with cell.json (variant, seed, WERs, loss parts, seconds)
      ablation.json         per variant: mean ± std and every seed's numbers; paired comparisons
      ablation.md           the same as a table and sentences
      ablation.png          WER per variant, every seed a dot

Modules: ``variants`` (built-in and user variants, checked), ``stats`` (mean ± std, paired t-interval),
``study`` (objective, grid, ``ablate``), ``outputs`` (the three files, the report's view).
"""

import importlib
from typing import Any

from geodistill.ablate.stats import mean_std, paired
from geodistill.ablate.view import ablation_of_run, render_markdown

# These need Optuna (the `tune` extra): imported on first use, so the report can read an ablation without it.
_LAZY = {
    "AblateObjective": "geodistill.ablate.study",
    "ablate": "geodistill.ablate.study",
    "ablate_plan": "geodistill.ablate.study",
    "summarize": "geodistill.ablate.outputs",
    "write_ablation": "geodistill.ablate.outputs",
    "DEFAULT_NAMES": "geodistill.ablate.variants",
    "ablation_seeds": "geodistill.ablate.variants",
    "ablation_variants": "geodistill.ablate.variants",
    "default_variants": "geodistill.ablate.variants",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'geodistill.ablate' has no attribute {name!r}")


__all__ = ["ablation_of_run", "mean_std", "paired", "render_markdown", *_LAZY]
