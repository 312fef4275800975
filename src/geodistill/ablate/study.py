"""The ablation as an Optuna study: a grid over (variant, seed) run by ``tune``'s workers, storage, shared
teacher cache, heartbeat retry and exact budget; one cell = one training run in ``trial-<n>/``."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from geodistill.ablate.outputs import GRID_ATTR, cell_key, write_ablation
from geodistill.ablate.variants import ablation_seeds, ablation_variants
from geodistill.ablate.view import CELL_FILE
from geodistill.config import Config
from geodistill.errors import GeodistillError
from geodistill.evaluate.run import evaluate
from geodistill.runfolder import RunFolder
from geodistill.students import family_for_init
from geodistill.teacher.cache import is_complete
from geodistill.train.validate import VAL_MAX_NEW_TOKENS
from geodistill.tune import (
    HEARTBEAT_S,
    Objective,
    StudyRunner,
    budget_used,
    check_tune_args,
    is_sqlite,
    storage_url,
)

log = logging.getLogger("geodistill.tune")  # tune's logger: the runner's session logs it to tune.log
PENDING = (TrialState.RUNNING, TrialState.WAITING)
GRID_SEED = 0  # every worker and every rerun must shuffle the grid alike: grid ids index the shuffle


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its own stopping rule: the study's budget decides when work ends
    (a re-run failed cell is an extra trial after the grid is exhausted, and must not stop the others)."""

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        return None


class AblateObjective(Objective):
    """``objective(trial) -> final validation WER`` of one (variant, seed) cell; never pruned.

    Besides the run folder it writes ``cell.json`` there (and the trial's ``cell`` user attribute):
    variant, seed, validation WER, test WER (with ``ablate.test``), final loss parts, train seconds.
    """

    def __init__(self, cfg: Config, study_dir: Path, teacher_model=None):
        self.variants, self.seeds = ablation_variants(cfg), ablation_seeds(cfg)
        space = {
            "variant": CategoricalDistribution(list(self.variants)),
            "seed": CategoricalDistribution(self.seeds),
        }
        super().__init__(cfg, space, study_dir, teacher_model)

    def teacher_outputs(self):
        """The shared cache, as in tuning; says once per ablation whether it was built or reused."""
        if self._provider is None and self.cfg.teacher_cache:
            built = not is_complete(self.cfg.teacher_cache)
            super().teacher_outputs()
            if built and is_complete(self.cfg.teacher_cache):
                log.info(
                    "teacher cache %s: built once for every cell of the ablation", self.cfg.teacher_cache
                )
            else:
                log.info("teacher cache %s: reused (already built)", self.cfg.teacher_cache)
        return self._provider

    def _run(self, trial: optuna.Trial, params: dict[str, Any], run_dir: Path) -> float:
        variant, seed = params["variant"], int(params["seed"])
        overrides = {**self.variants[variant], "train.seed": seed}
        started = time.perf_counter()
        wer = super()._run(trial, overrides, run_dir)
        seconds = time.perf_counter() - started
        history = RunFolder(run_dir).history() or {}
        cell = {
            "variant": variant,
            "seed": seed,
            "val_wer": wer,
            "test_wer": self._test_wer(run_dir),
            "train_seconds": round(seconds, 3),
            "final_loss": history["train"][-1] if history["train"] else None,
            "trial": trial.number,
            "run_dir": str(run_dir.resolve()),
        }
        (run_dir / CELL_FILE).write_text(json.dumps(cell, indent=2) + "\n")
        trial.set_user_attr("cell", cell)
        return wer

    def _test_wer(self, run_dir: Path) -> float | None:
        """Normalised WER of the cell's final student on ``ablate.test`` (eval files in run_dir/eval-test)."""
        if not self.cfg.ablate.test:
            return None

        result = evaluate(
            str(RunFolder(run_dir).final),
            self.cfg.ablate.test,
            out=run_dir / "eval-test",
            batch_size=self.cfg.train.batch_size,
            device=self.cfg.train.device,
            language=self.cfg.data.language,
            # a family without decoder tokens (a CTC student: one label per frame) takes no token cap
            max_new_tokens=VAL_MAX_NEW_TOKENS if family_for_init(self.cfg.student.init).token_cap else None,
        )
        if not math.isfinite(result["wer"]):
            raise GeodistillError(f"trial {run_dir.name}: test WER is not finite ({result['wer']})")
        return float(result["wer"])

    def _reporter(self, trial: optuna.Trial):
        def on_eval(step: int, wer: float) -> None:
            trial.report(wer, step)  # the curve is kept; an ablation cell is never pruned

        return on_eval


def ablate_plan(cfg: Config, label: str, n_existing: int, shared: bool) -> tuple:
    """tune's StudyPlan for an ablation: the (variant, seed) grid, its objective, its output files."""
    study_dir = Path(cfg.run_dir)
    objective = AblateObjective(cfg, study_dir)
    grid = {name: list(dist.choices) for name, dist in objective.space.items()}
    return _Grid(grid, seed=GRID_SEED), objective, lambda s, _t: write_ablation(s, cfg, study_dir, label)


def _grid_record(cfg: Config) -> dict[str, Any]:
    return {"variants": ablation_variants(cfg), "seeds": ablation_seeds(cfg)}


def _check_grid(study: optuna.Study, record: dict[str, Any], study_dir: Path) -> None:
    """Record the grid on a new study; refuse a study that holds another grid or a tuning search."""
    theirs = study.user_attrs.get(GRID_ATTR)
    if theirs is None:
        if study.get_trials(deepcopy=False):
            raise GeodistillError(
                f"{study_dir}: its study holds trials that are not an ablation's; use another run_dir"
            )
        study.set_user_attr(GRID_ATTR, record)
    elif theirs != record:
        raise GeodistillError(
            f"{study_dir}: this ablation ran variants {list(theirs['variants'])} with seeds "
            f"{theirs['seeds']} (overrides as recorded), not variants {list(record['variants'])} with seeds "
            f"{record['seeds']}; use another run_dir to change them"
        )


def _failed_cells(trials: list[FrozenTrial]) -> list[tuple[str, int]]:
    """Cells whose every trial failed (none complete, none running or waiting): a rerun runs them again."""
    by_cell: dict[tuple[str, int], set[TrialState]] = {}
    for t in trials:
        if "variant" in t.params:
            by_cell.setdefault(cell_key(t.params), set()).add(t.state)
    return sorted(cell for cell, states in by_cell.items() if states == {TrialState.FAIL})


def _budget(runner: StudyRunner, study: optuna.Study, n_cells: int) -> int:
    """Trials this run may reach in total: the grid, plus one re-run of each cell whose trials all failed
    (queued here, so every worker runs it once)."""
    trials = study.get_trials(deepcopy=False)
    failed = _failed_cells(trials)
    n_trials = max(n_cells, budget_used(trials)) + len(failed)
    if failed:  # a queued trial counts against the budget when it is queued
        study = runner.open(n_trials)
    for variant, seed in failed:
        study.enqueue_trial({"variant": variant, "seed": seed})
        log.info("cell %s, seed %d failed earlier: queued to run again", variant, seed)
    return n_trials


def check_ablate_args(cfg: Config, workers: int, heartbeat_s: int, storage: str | None) -> str:
    """Every problem with the ablation's settings before any compute; returns the storage URL."""
    ablation_variants(cfg)
    check_tune_args(cfg, 1, None, workers, heartbeat_s)
    url = storage_url(cfg, storage)
    if workers > 1 and is_sqlite(url):
        raise GeodistillError(
            f"workers={workers} needs a database server, not SQLite; pass --storage postgresql://user@host/db"
        )
    return url


def ablate(
    cfg: Config,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int = 1,
    heartbeat_s: int = HEARTBEAT_S,
) -> dict[str, Any]:
    """Run, or resume, the ablation of ``cfg`` (``cfg.ablate``: variants, seeds, test data) in cfg.run_dir.

    Every cell trains ``tune.steps`` (default train.max_steps) steps on the same data from the same
    teacher cache; a rerun skips finished cells and re-runs failed ones once. Returns ablation.json's content.
    """
    check_ablate_args(cfg, workers, heartbeat_s, storage)
    runner = StudyRunner(cfg, storage, study_name, command="ablate", workers=workers, heartbeat_s=heartbeat_s)
    cfg, name, study_dir = runner.cfg, runner.name, runner.study_dir
    record = _grid_record(cfg)
    n_cells = len(record["variants"]) * len(record["seeds"])
    with runner.session():
        study = runner.open(n_cells)
        runner.claim()
        _check_grid(study, record, study_dir)
        n_trials = _budget(runner, study, n_cells)
        log.info(
            "ablation %r on %s: %d variants x %d seeds, %d steps each, %d worker(s) here",
            name,
            runner.label,
            len(record["variants"]),
            len(record["seeds"]),
            cfg.tune.steps or cfg.train.max_steps,
            workers,
        )
        trials = study.get_trials(deepcopy=False)
        if budget_used(trials) >= n_trials and not any(t.state in PENDING for t in trials):
            log.info("every cell has finished: nothing to train (a new grid needs another run_dir)")
        else:
            runner.run(n_trials, plan=ablate_plan)
        summary = write_ablation(runner.load(), cfg, study_dir, runner.label)
        log.info("ablation done: %s", study_dir / "ablation.md")
    return summary
