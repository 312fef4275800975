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
to N in total and never past it. A trial whose worker died (no heartbeat for GRACE_FACTOR * HEARTBEAT_S
= 120 s) is marked failed and re-queued once with the same parameters; the retry takes its place in the
count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import gc
import json
import logging
import math
import multiprocessing
import os
import random
import socket
import sys
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, ProgrammingError, SQLAlchemyError

from geodistill.config import Config, ConfigError, from_dict, merge, to_dict, validate
from geodistill.errors import GeodistillError

log = logging.getLogger("geodistill.tune")

# The seed's space. Loss weights and lr on a log scale; the seed warns against temperatures above 5.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "loss.kl_weight": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
    "loss.geo_weight": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
    "train.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [4, 8, 16, 32]},
    "student.lora.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "loss.temperature": {"type": "float", "low": 1.0, "high": 5.0},
}
SEED_MAX_TEMPERATURE = 5.0  # "avoid T > 5": softer targets wash out the teacher's ranking
SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
# Not tunable: the study's own settings, the shared teacher, and the budget (tune.steps sets max_steps).
# The data too: the teacher cache is built once over it.
FIXED = ("run_dir", "teacher", "teacher_cache", "data", "tune", "train.max_steps")
STORAGE_FILE = "optuna.db"
HEARTBEAT_S = 30  # a worker touches its running trial this often
GRACE_FACTOR = 4  # a trial silent for GRACE_FACTOR heartbeats is failed and re-queued (once)
OBJECTIVE = "final validation WER (normalised), minimised"


class BudgetSpent(optuna.exceptions.OptunaError):
    """The study already holds its ``n_trials``: no new trial may start."""


# ---------------------------------------------------------------------------------------------- space


def default_space(cfg: Config) -> dict[str, dict[str, Any]]:
    """The seed's space without parameters that cannot act in this config (they would only add noise)."""
    space = dict(DEFAULT_SPACE)
    if cfg.student.lora.r == 0:
        space.pop("student.lora.dropout")
    if cfg.loss.hidden_loss == "none":
        space.pop("loss.geo_weight")
    return space


def _distribution(where: str, spec: Any, problems: list[str]) -> BaseDistribution | None:
    if not isinstance(spec, dict):
        problems.append(
            f"{where}: expected a mapping like {{type: float, low: 0.0, high: 1.0}}, got {spec!r}"
        )
        return None
    kind = spec.get("type")
    if kind not in SPEC_KEYS:
        problems.append(f"{where}.type: must be one of {', '.join(SPEC_KEYS)}, got {kind!r}")
        return None
    unknown = sorted(set(spec) - SPEC_KEYS[kind])
    if unknown:
        problems.append(
            f"{where}: unknown key(s) {', '.join(unknown)} for type {kind} "
            f"(known: {', '.join(sorted(SPEC_KEYS[kind]))})"
        )
        return None
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.append(f"{where}.choices: must be a non-empty list, got {choices!r}")
        elif not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
            problems.append(
                f"{where}.choices: each choice must be a number, string, bool or null, got {choices!r}"
            )
        else:
            return CategoricalDistribution(choices)
        return None
    number = int if kind == "int" else int | float
    bad = [k for k in ("low", "high") if not isinstance(spec.get(k), number) or isinstance(spec.get(k), bool)]
    if bad or not isinstance(spec.get("log", False), bool):
        problems.append(f"{where}: needs {kind} low and high (and log: true/false), got {spec!r}")
        return None
    try:
        if kind == "int":
            return IntDistribution(
                spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step", 1)
            )
        return FloatDistribution(spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step"))
    except (ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}")
        return None


def _config_leaf(tree: dict[str, Any], name: str, where: str, problems: list[str]) -> bool:
    """True when ``name`` (dotted) is a settable leaf of the config tree."""
    if any(name == f or name.startswith(f + ".") for f in FIXED):
        problems.append(f"{where}: not tunable (fixed for the whole study: {', '.join(FIXED)})")
        return False
    node: Any = tree
    for depth, part in enumerate(name.split(".")):
        if not isinstance(node, dict) or part not in node:
            parent = ".".join(name.split(".")[:depth]) or "the config"
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "nothing (a value)"
            problems.append(f"{where}: no such config key ({parent} has: {known})")
            return False
        node = node[part]
    if isinstance(node, dict):
        problems.append(f"{where}: names a section, not a value (e.g. {name}.{next(iter(node), '...')})")
        return False
    return True


def _extremes(dist: BaseDistribution) -> list[Any]:
    return list(dist.choices) if isinstance(dist, CategoricalDistribution) else [dist.low, dist.high]


def search_space(cfg: Config) -> dict[str, BaseDistribution]:
    """``cfg.tune.space`` (or the seed's space) as Optuna distributions, checked before any trial.

    Each entry must name a config value and produce a valid config at both ends of its range (each
    choice); one ConfigError lists every bad entry.
    """
    raw = cfg.tune.space if cfg.tune.space is not None else default_space(cfg)
    if not raw:
        raise ConfigError("tune.space: empty; give at least one parameter (or omit it for the seed's space)")
    problems: list[str] = []
    tree = to_dict(cfg)
    space: dict[str, BaseDistribution] = {}
    for name, spec in raw.items():
        where = f"tune.space.{name}"
        dist = _distribution(where, spec, problems)
        if dist is None or not _config_leaf(tree, name, where, problems):
            continue
        for value in _extremes(dist):
            try:
                trial_config(cfg, {name: value}, cfg.run_dir, 1)
            except ConfigError as exc:
                reasons = "; ".join(line.strip() for line in str(exc).splitlines()[1:]) or str(exc)
                problems.append(f"{where}: value {value!r} gives an invalid config ({reasons})")
        space[name] = dist
    if problems:
        raise ConfigError("invalid tune.space:\n  " + "\n  ".join(problems))
    temp = space.get("loss.temperature")
    if temp is not None and max(_extremes(temp)) > SEED_MAX_TEMPERATURE:
        log.warning(
            "tune.space.loss.temperature reaches %s: the seed advises T <= %s",
            max(_extremes(temp)),
            SEED_MAX_TEMPERATURE,
        )
    return space


def trial_config(cfg: Config, params: dict[str, Any], run_dir: str | Path, steps: int) -> Config:
    """``cfg`` with dotted ``params`` applied, its own ``run_dir`` and a ``steps`` budget; validated."""
    tree: dict[str, Any] = {"run_dir": str(run_dir), "train": {"max_steps": steps}}
    for name, value in params.items():
        *parents, leaf = name.split(".")
        update: dict[str, Any] = {leaf: value}
        for part in reversed(parents):
            update = {part: update}
        tree = merge(tree, update)
    out = from_dict(merge(to_dict(cfg), tree))
    validate(out)
    return out


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


# -------------------------------------------------------------------------------------------- storage


def storage_url(cfg: Config, storage: str | None) -> str:
    """The study's RDB URL: ``storage`` as given, else a SQLite file in the study folder."""
    return storage or f"sqlite:///{Path(cfg.run_dir).resolve() / STORAGE_FILE}"


def mask_url(url: str) -> str:
    """The URL as it may be shown or written: ``postgresql://user:***@host/db``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparsable storage URL>"  # never echo it: it may hold a password


def _is_sqlite(url: str) -> bool:
    try:
        return make_url(url).get_backend_name() == "sqlite"
    except (ArgumentError, ValueError):
        return False


def budget_used(trials: list[FrozenTrial]) -> int:
    """Trials that count towards ``n_trials``: all of them, except re-queued copies of a dead worker's trial
    (the retry replaces the original, which stays recorded as failed)."""
    return sum(1 for t in trials if "failed_trial" not in t.system_attrs)  # set by the retry callback


def _budget_used(session, study_id: int) -> int:
    """``budget_used`` counted in ``session``, the transaction that holds the study-row lock. (Storage
    getters open their own scoped session, which is this same thread-local one: leaving it would commit
    and release the lock, and two workers could then number a new trial alike.)"""
    from optuna.storages._rdb import models

    trials = session.query(models.TrialModel).filter(models.TrialModel.study_id == study_id)
    retries = (
        session.query(models.TrialSystemAttributeModel)
        .join(models.TrialModel)
        .filter(
            models.TrialModel.study_id == study_id, models.TrialSystemAttributeModel.key == "failed_trial"
        )
    )
    return trials.count() - retries.count()


class BudgetStorage(RDBStorage):
    """RDBStorage that refuses to create a new trial once the study holds ``max_trials``.

    Optuna numbers a new trial while holding a lock on the study's row; counting under that same lock
    makes the total exact for any number of workers. (MaxTrialsCallback only looks after a trial ends,
    so W workers overshoot by up to W - 1, and a rerun of a finished study still adds one trial per
    worker: optuna/optuna#3518.)
    """

    def __init__(self, url: str, max_trials: int, **kwargs: Any) -> None:
        if not hasattr(RDBStorage, "_get_prepared_new_trial"):
            raise GeodistillError(
                f"optuna {optuna.__version__} lacks the hook the trial budget uses; install optuna>=4.9,<6"
            )
        super().__init__(url, **kwargs)
        self.max_trials = max_trials

    def _get_prepared_new_trial(self, study_id, template_trial, session):  # called under the study-row lock
        if template_trial is None:  # a fresh ask(); re-queued and added trials carry a template
            used = _budget_used(session, study_id)
            if used >= self.max_trials:
                raise BudgetSpent(f"the study holds {used} of {self.max_trials} trials")
        return super()._get_prepared_new_trial(study_id, template_trial, session)


def _scrub(text: str, url: str) -> str:
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        return "(details hidden)"
    return text.replace(str(password), "***") if password else text


def _open_storage(url: str, n_trials: int, heartbeat_s: int, tries: int = 5) -> BudgetStorage:
    for attempt in range(tries):
        try:
            return BudgetStorage(
                url,
                n_trials,
                heartbeat_interval=heartbeat_s,
                grace_period=GRACE_FACTOR * heartbeat_s,
                heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        except (IntegrityError, ProgrammingError):
            # Workers starting together on an empty database race to create Optuna's tables (PostgreSQL:
            # duplicate key in pg_type); the loser finds them made when it tries again.
            if attempt == tries - 1:
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def open_study(
    cfg: Config, url: str, study_name: str, n_trials: int, heartbeat_s: int = HEARTBEAT_S
) -> optuna.Study:
    """Create or load (``load_if_exists``) the study on ``url`` with the budget, heartbeat and retry set."""
    label = mask_url(url)
    try:
        with warnings.catch_warnings():  # heartbeat and retry are experimental; we rely on them knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = _open_storage(url, n_trials, heartbeat_s)
            pruner = optuna.pruners.MedianPruner(
                n_startup_trials=cfg.tune.pruner_startup_trials, n_warmup_steps=cfg.tune.pruner_warmup_steps
            )
            return optuna.create_study(
                storage=storage,
                study_name=study_name,
                direction="minimize",
                pruner=pruner,
                load_if_exists=True,
            )
    except ImportError as exc:
        raise GeodistillError(
            f"storage {label}: its database driver is missing ({exc}); for postgresql:// URLs "
            "pip install 'psycopg[binary]' (or write postgresql+psycopg2://... with psycopg2 installed)"
        ) from None
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, ArgumentError) as exc:
        first = _scrub(str(getattr(exc, "orig", None) or exc), url).strip().splitlines()
        raise GeodistillError(
            f"storage {label}: cannot open it ({first[0] if first else type(exc).__name__})"
        ) from None
    except ValueError as exc:  # e.g. the study exists with another direction
        raise GeodistillError(f"storage {label}, study {study_name!r}: {_scrub(str(exc), url)}") from None


def _sampler_seed(cfg: Config, n_existing: int, shared: bool) -> int:
    # A continued study must not replay the first run's random start-up points, and workers sharing a
    # study must not draw the same points at the same time.
    seed = cfg.train.seed + n_existing
    if shared:
        seed += zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
    return seed % 2**32


# ------------------------------------------------------------------------------------------ objective


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def record_failure(trial: optuna.Trial, run_dir: Path, exc: BaseException) -> None:
    """The error's traceback in ``run_dir/error.txt`` and its one-line text in the trial's user attrs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").write_text("".join(traceback.format_exception(exc)))
    trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
    log.warning(
        "trial %d failed: %s: %s (traceback in %s)",
        trial.number,
        type(exc).__name__,
        exc,
        run_dir / "error.txt",
    )


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Objective:
    """``objective(trial) -> final validation WER`` of one training run in ``<study folder>/trial-<n>/``.

    Within a process every trial shares one loaded teacher and one reader of the study's teacher cache
    (built on first use; workers on one machine take turns through a file lock, so it is built once).
    """

    def __init__(self, cfg: Config, space: dict[str, BaseDistribution], study_dir: Path, teacher_model=None):
        self.cfg, self.space, self.study_dir = cfg, space, study_dir
        self.steps = cfg.tune.steps or cfg.train.max_steps
        self._teacher = teacher_model
        self._provider = None

    def teacher(self):
        """The (model, processor) pair every trial of this process shares."""
        if self._teacher is None:
            from geodistill.train.setup import load_teacher

            self._teacher = load_teacher(self.cfg)
        return self._teacher

    def teacher_outputs(self):
        """The study's cached teacher outputs (None without a cache); loads the teacher on first use."""
        if self._provider is None and self.cfg.teacher_cache:
            from geodistill.students.sharing import cross_kv_plan
            from geodistill.teacher.cache import cached_teacher_for

            teacher = self.teacher()
            layers = ()  # the base config's student decides which cross-attention K/V are stored
            if self.cfg.teacher_cache_cross_kv:
                layers = tuple(sorted(cross_kv_plan(self.cfg, teacher[0].config).values()))
            with _file_lock(self.study_dir / "teacher_cache.lock"):
                self._provider = cached_teacher_for(self.cfg, teacher, cross_kv_layers=layers)
        return self._provider

    def __call__(self, trial: optuna.Trial) -> float:
        params = {name: _suggest(trial, name, dist) for name, dist in self.space.items()}
        run_dir = self.study_dir / f"trial-{trial.number}"
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        log.info("trial %d: %s", trial.number, json.dumps(params))
        try:
            return self._run(trial, params, run_dir)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # recorded here; optimize(catch=(Exception,)) marks it FAIL and goes on
            record_failure(trial, run_dir, exc)
            raise
        finally:
            _free_memory()

    def _run(self, trial: optuna.Trial, params: dict[str, Any], run_dir: Path) -> float:
        from geodistill.train.loop import train

        cfg = trial_config(self.cfg, params, run_dir, self.steps)
        result = train(
            cfg,
            on_eval=self._reporter(trial),
            teacher_provider=self.teacher_outputs(),
            teacher_model=self.teacher(),
        )
        if result.exit_code != 0:  # SIGINT/SIGTERM reached the loop, which checkpointed: stop like Ctrl-C
            raise KeyboardInterrupt(f"trial {trial.number} stopped by a signal at step {result.step}")
        if result.final_wer is None or not math.isfinite(result.final_wer):
            raise GeodistillError(f"trial {trial.number}: no finite validation WER (got {result.final_wer})")
        return float(result.final_wer)

    def _reporter(self, trial: optuna.Trial) -> Callable[[int, float], None]:
        def on_eval(step: int, wer: float) -> None:
            trial.report(wer, step)
            # The last validation is the trial's value: report it, but a finished trial is not pruned.
            if step < self.steps and trial.should_prune():
                raise optuna.TrialPruned(
                    f"validation WER {wer:.4f} at step {step} is worse than the median "
                    "of earlier trials at that step"
                )

        return on_eval


# -------------------------------------------------------------------------------------------- outputs


def _write_atomic(path: Path, data: bytes) -> None:
    # Several workers refresh the same files: each writes its own temporary file, then renames it.
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
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as om

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
                _write_atomic(study_dir / name, buf.getvalue())
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
    _write_atomic(study_dir / "best_params.json", (json.dumps(summary, indent=2) + "\n").encode())
    _write_atomic(study_dir / "trials.csv", study.trials_dataframe().to_csv(index=False).encode())
    return summary


# ------------------------------------------------------------------------------------------- workers


def work(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    n_trials: int,
    timeout: float | None = None,
    poll_s: float = 5.0,
    on_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> None:
    """Run trials until ``n_trials`` are spent and none is left running elsewhere, or ``timeout`` s pass.

    Staying while other workers' trials run means a trial whose worker dies is picked up here once the
    heartbeat grace period marks it failed and re-queues it.
    """

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial is not None:
            on_trial(study, trial)
        # BudgetStorage refuses the next trial anyway; stopping here as well needs no storage internals.
        if budget_used(study.get_trials(deepcopy=False)) >= n_trials:
            study.stop()

    start = time.monotonic()
    said = False
    while True:
        left = None if timeout is None else timeout - (time.monotonic() - start)
        if left is not None and left <= 0:
            return
        with contextlib.suppress(BudgetSpent):
            study.optimize(objective, timeout=left, catch=(Exception,), callbacks=[after_trial])
        trials = study.get_trials(deepcopy=False)
        others = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        if budget_used(trials) < n_trials or not others:  # timed out, or the study is done
            return
        if not said:
            log.info("budget reached; waiting for %d trial(s) still running on other workers", len(others))
            said = True
        time.sleep(poll_s if left is None else max(0.0, min(poll_s, left)))


def run_worker(
    cfg: Config,
    url: str,
    study_name: str,
    n_trials: int,
    timeout: float | None = None,
    heartbeat_s: int = HEARTBEAT_S,
    shared: bool = False,
) -> None:
    """One worker: open the study and run trials in this process until the study is done."""
    study_dir = Path(cfg.run_dir)
    study = open_study(cfg, url, study_name, n_trials, heartbeat_s)
    trials = study.get_trials(deepcopy=False)
    study.sampler = optuna.samplers.TPESampler(
        seed=_sampler_seed(cfg, len(trials), shared), constant_liar=True
    )
    label = mask_url(url)
    objective = Objective(cfg, search_space(cfg), study_dir)
    if budget_used(trials) < n_trials:
        # Teacher and cache before the first trial: a bad one is then one error, not n failed trials.
        objective.teacher_outputs()
    else:
        log.info("the study already holds its %d trials; raise --n-trials to run more", n_trials)
    work(
        study,
        objective,
        n_trials,
        timeout,
        poll_s=min(5.0, heartbeat_s),
        on_trial=lambda s, _t: write_outputs(s, study_dir, label),
    )


def _worker_main(
    cfg_dict: dict,
    url: str,
    study_name: str,
    n_trials: int,
    timeout: float | None,
    heartbeat_s: int,
    index: int,
    workers: int,
) -> None:
    """Entry point of a spawned worker process (the URL arrives by pipe, never on a command line)."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:  # W workers share the cores: oversubscribed OpenMP threads spin
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    cfg = from_dict(cfg_dict)
    try:
        with _study_log(Path(cfg.run_dir), f"worker {index}"):
            run_worker(cfg, url, study_name, n_trials, timeout, heartbeat_s, shared=True)
    except (GeodistillError, ConfigError) as exc:
        print(f"error: tuning worker {index}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def _spawn_workers(
    cfg: Config,
    url: str,
    study_name: str,
    n_trials: int,
    timeout: float | None,
    heartbeat_s: int,
    workers: int,
) -> None:
    ctx = multiprocessing.get_context("spawn")  # a forked child would inherit live DB connections and threads
    args = (to_dict(cfg), url, study_name, n_trials, timeout, heartbeat_s)
    procs = [
        ctx.Process(target=_worker_main, args=(*args, i, workers), name=f"geodistill-tune-{i}")
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    log.info("started %d worker processes (pids %s)", workers, ", ".join(str(p.pid) for p in procs))
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:  # the terminal's SIGINT reached the workers too: let them record their trials
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
        raise
    failed = [f"{i} (exit code {p.exitcode})" for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise GeodistillError(
            f"tuning worker(s) {', '.join(failed)} failed; see {Path(cfg.run_dir) / 'tune.log'}"
        )


# ------------------------------------------------------------------------------------------------ tune


@contextlib.contextmanager
def _study_log(study_dir: Path, who: str = "") -> Iterator[None]:
    """This process's tuning messages and Optuna's trial results also go to ``<study folder>/tune.log``."""
    study_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"[{who}] " if who else ""
    file = logging.FileHandler(study_dir / "tune.log")
    file.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s {prefix}%(message)s"))
    console = logging.StreamHandler()
    console.setFormatter(logging.Formatter(f"tune: {prefix}%(message)s"))
    log.setLevel(logging.INFO)
    log.propagate = False  # the trial's own train.log gets the loop's messages, not these
    pairs = [(log, file), (log, console), (logging.getLogger("optuna"), file)]
    for logger, handler in pairs:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger, handler in pairs:
            logger.removeHandler(handler)
        file.close()


def _claim_folder(study_dir: Path, record: dict[str, str]) -> None:
    """A study folder belongs to one study: refuse to mix trial folders of two studies."""
    path = study_dir / "study.json"
    if path.is_file():
        try:
            theirs = json.loads(path.read_text())
        except ValueError:
            theirs = {}
        if theirs != record:
            raise GeodistillError(
                f"{study_dir}: holds study {theirs.get('study')!r} on {theirs.get('storage')}, "
                f"not {record['study']!r} on {record['storage']}; use another run_dir"
            )
        return
    _write_atomic(path, (json.dumps(record, indent=2) + "\n").encode())


def check_tune_args(
    cfg: Config, n_trials: int, timeout: float | None, workers: int, heartbeat_s: int
) -> None:
    p = []
    if n_trials < 1:
        p.append(f"n_trials: must be >= 1, got {n_trials}")
    if workers < 1:
        p.append(f"workers: must be >= 1, got {workers}")
    if timeout is not None and timeout <= 0:
        p.append(f"timeout: must be > 0 seconds, got {timeout}")
    if heartbeat_s < 1:
        p.append(f"heartbeat_s: must be >= 1, got {heartbeat_s}")
    t = cfg.tune
    if t.steps is not None and t.steps < 1:
        p.append(f"tune.steps: must be >= 1, got {t.steps}")
    if t.pruner_startup_trials < 0 or t.pruner_warmup_steps < 0:
        p.append(
            f"tune: pruner_startup_trials and pruner_warmup_steps must be >= 0, got "
            f"{t.pruner_startup_trials} and {t.pruner_warmup_steps}"
        )
    if p:
        raise ConfigError("invalid tuning settings:\n  " + "\n  ".join(p))


def _warn_budget(cfg: Config, steps: int) -> None:
    t, lo = cfg.train, cfg.loss
    if t.warmup_steps >= steps:
        log.warning(
            "train.warmup_steps=%d >= the %d-step trial budget: the lr never reaches train.lr",
            t.warmup_steps,
            steps,
        )
    if lo.kl_warmup_steps >= steps and lo.kl_weight > 0:
        log.warning(
            "loss.kl_warmup_steps=%d >= the %d-step trial budget: the KL weight never reaches its value",
            lo.kl_warmup_steps,
            steps,
        )
    if not t.eval_every or t.eval_every >= steps:
        log.warning(
            "train.eval_every=%d: no validation before a trial's last step, so nothing is pruned",
            t.eval_every,
        )
    elif cfg.tune.pruner_warmup_steps >= steps:
        log.warning(
            "tune.pruner_warmup_steps=%d >= tune.steps=%d: nothing is pruned",
            cfg.tune.pruner_warmup_steps,
            steps,
        )


def tune(
    cfg: Config,
    n_trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    timeout: float | None = None,
    workers: int = 1,
    heartbeat_s: int = HEARTBEAT_S,
) -> dict[str, Any]:
    """Run, or continue, an Optuna study of ``cfg`` up to ``n_trials`` trials in total.

    cfg.run_dir is the study folder. storage: an Optuna RDB URL (default: SQLite in the study folder);
    study_name: default the study folder's name; timeout: seconds per worker; workers: processes on this
    machine (needs a database server); heartbeat_s: liveness interval of a running trial. Returns the
    content of best_params.json.
    """
    n_trials = cfg.tune.n_trials if n_trials is None else n_trials
    check_tune_args(cfg, n_trials, timeout, workers, heartbeat_s)
    url = storage_url(cfg, storage)
    if workers > 1 and _is_sqlite(url):
        raise GeodistillError(
            f"workers={workers} needs a database server, not SQLite: SQLite's file locking is "
            "unreliable with several processes writing at once (Optuna's docs advise an RDB); "
            "pass --storage postgresql://user@host/db"
        )
    search_space(cfg)  # every problem with the space, before any trial
    study_dir = Path(cfg.run_dir)
    study_dir.mkdir(parents=True, exist_ok=True)
    name = study_name or study_dir.resolve().name
    label = mask_url(url)
    _claim_folder(study_dir, {"study": name, "storage": label if storage else STORAGE_FILE})
    if not cfg.teacher_cache:
        cfg = dataclasses.replace(cfg, teacher_cache=str((study_dir / "teacher_cache").resolve()))
    with _study_log(study_dir):
        steps = cfg.tune.steps or cfg.train.max_steps
        _warn_budget(cfg, steps)
        log.info(
            "study %r on %s: up to %d trials in total, %d steps each, %d worker(s) here",
            name,
            label,
            n_trials,
            steps,
            workers,
        )
        if workers == 1:
            run_worker(cfg, url, name, n_trials, timeout, heartbeat_s, shared=storage is not None)
        else:
            open_study(cfg, url, name, n_trials, heartbeat_s)  # an unreachable server: one error, not W
            _spawn_workers(cfg, url, name, n_trials, timeout, heartbeat_s, workers)
        summary = write_outputs(optuna.load_study(study_name=name, storage=url), study_dir, label)
        log.info("best: trial %s, WER %s, params %s", summary["trial"], summary["value"], summary["params"])
    return summary
