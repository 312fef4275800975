"""Optuna search over the distillation hyperparameters: each trial is an ordinary training run.

The seed's block: TPE sampler, MedianPruner(n_startup_trials=5, n_warmup_steps=100), minimise the
validation WER. A trial reports its normalised WER at every validation (``trial.report(wer, step)``) and
is pruned there when it is worse than the median of earlier trials at the same step.

    <study folder = cfg.run_dir>/
      optuna.db              the study, when no --storage is given (SQLite)
      study.json             which study this folder belongs to (storage URL without its password)
      tune.log               this folder's workers: trials started, finished, pruned, failed
      teacher_cache/         the teacher's outputs, built once and read by every trial
      trial-<n>/             trial n's run folder (error.txt when it failed)
      best_params.json       best trial: params, value, trial number, run folder; trial counts; plot notes
      trials.csv             study.trials_dataframe()
      optimization_history.png  param_importances.png  intermediate_values.png

Budget: ``n_trials`` is the study's total, counted over every trial it has started whatever its end
(complete, pruned, failed, or still running on another worker), so a rerun or a late worker continues
to N in total and never past it. That holds for several workers on PostgreSQL or MySQL, where the count is
taken under Optuna's row lock on the study (``SELECT ... FOR UPDATE``); SQLite has no row locks and is
single-worker. A trial whose worker died (no heartbeat for GRACE_FACTOR * HEARTBEAT_S = 120 s) is marked
failed and re-queued once with the same parameters; the retry takes its place in the count.

Modules: ``space`` (search space, trial config), ``storage`` (URLs, budget, opening the study),
``objective`` (one trial = one training run), ``outputs`` (best_params.json, trials.csv, plots),
``workers`` (worker loop, worker processes, tune.log), ``runner`` (``StudyRunner``: one command's run of a
study in its folder, shared with ``geodistill ablate``), ``study`` (``tune``).

The study-runner API other commands build on (``geodistill ablate`` does): ``StudyRunner`` (folder held,
claimed and logged; study opened; trials run here or in spawned workers), ``StudyPlan`` (what the trials
are; ``tpe_plan`` is tuning's), ``run_worker``, ``spawn_workers``, ``study_log``, ``work``, and from
storage ``storage_url``, ``is_sqlite``, ``mask_url``, ``open_study``, ``budget_used``.
"""

from geodistill.tune.objective import Objective, record_failure
from geodistill.tune.outputs import OBJECTIVE, write_outputs, write_plots
from geodistill.tune.runner import StudyRunner
from geodistill.tune.space import DEFAULT_SPACE, FIXED, default_space, search_space, trial_config
from geodistill.tune.storage import (
    GRACE_FACTOR,
    HEARTBEAT_S,
    STORAGE_FILE,
    BudgetSpent,
    BudgetStorage,
    budget_used,
    is_sqlite,
    mask_url,
    open_study,
    storage_url,
)
from geodistill.tune.study import check_tune_args, tune
from geodistill.tune.workers import StudyPlan, run_worker, spawn_workers, study_log, tpe_plan, work

__all__ = [
    "DEFAULT_SPACE",
    "FIXED",
    "GRACE_FACTOR",
    "HEARTBEAT_S",
    "OBJECTIVE",
    "STORAGE_FILE",
    "BudgetSpent",
    "BudgetStorage",
    "Objective",
    "StudyPlan",
    "StudyRunner",
    "budget_used",
    "check_tune_args",
    "default_space",
    "is_sqlite",
    "mask_url",
    "open_study",
    "record_failure",
    "run_worker",
    "search_space",
    "spawn_workers",
    "storage_url",
    "study_log",
    "tpe_plan",
    "trial_config",
    "tune",
    "work",
    "write_outputs",
    "write_plots",
]
