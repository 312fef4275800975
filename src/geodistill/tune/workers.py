"""Workers and the ``tune`` entry point: run trials until the budget is spent, one process or several on
this machine, with the study folder's log and claim."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from geodistill.config import Config, ConfigError, from_dict, to_dict
from geodistill.errors import GeodistillError
from geodistill.outdir import output_dir
from geodistill.runlock import hold
from geodistill.tune.objective import Objective, _sampler_seed
from geodistill.tune.outputs import _write_atomic, write_outputs
from geodistill.tune.space import search_space
from geodistill.tune.storage import (
    HEARTBEAT_S,
    STORAGE_FILE,
    BudgetSpent,
    _is_sqlite,
    budget_used,
    mask_url,
    open_study,
    storage_url,
)

log = logging.getLogger("geodistill.tune")  # one logger for the package: _study_log attaches to it


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


# (cfg, masked storage URL, trials already in the study, shared study?) -> (sampler, objective, on_trial)
StudyPlan = Callable[
    [Config, str, int, bool],
    tuple[optuna.samplers.BaseSampler, Objective, Callable[[optuna.Study, FrozenTrial], Any]],
]


def tpe_plan(cfg: Config, label: str, n_existing: int, shared: bool) -> tuple:
    """The tuning study's trials: TPE over ``search_space(cfg)``, summary files refreshed after each."""
    study_dir = Path(cfg.run_dir)
    sampler = optuna.samplers.TPESampler(seed=_sampler_seed(cfg, n_existing, shared), constant_liar=True)
    objective = Objective(cfg, search_space(cfg), study_dir)
    return sampler, objective, lambda s, _t: write_outputs(s, study_dir, label)


def run_worker(
    cfg: Config,
    url: str,
    study_name: str,
    n_trials: int,
    timeout: float | None = None,
    heartbeat_s: int = HEARTBEAT_S,
    shared: bool = False,
    plan: StudyPlan | None = None,
) -> None:
    """One worker: open the study and run trials in this process until the study is done.

    plan: what the trials are (default ``tpe_plan``); a module-level function, so spawned workers get it.
    """
    study = open_study(cfg, url, study_name, n_trials, heartbeat_s)
    trials = study.get_trials(deepcopy=False)
    study.sampler, objective, on_trial = (plan or tpe_plan)(cfg, mask_url(url), len(trials), shared)
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
        on_trial=on_trial,
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
    plan: StudyPlan | None = None,
) -> None:
    """Entry point of a spawned worker process (the URL arrives by pipe, never on a command line)."""
    import torch

    if "OMP_NUM_THREADS" not in os.environ:  # W workers share the cores: oversubscribed OpenMP threads spin
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    cfg = from_dict(cfg_dict)
    try:
        with _study_log(Path(cfg.run_dir), f"worker {index}"):
            run_worker(cfg, url, study_name, n_trials, timeout, heartbeat_s, shared=True, plan=plan)
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
    plan: StudyPlan | None = None,
) -> None:
    ctx = multiprocessing.get_context("spawn")  # a forked child would inherit live DB connections and threads
    args = (to_dict(cfg), url, study_name, n_trials, timeout, heartbeat_s)
    procs = [
        ctx.Process(target=_worker_main, args=(*args, i, workers, plan), name=f"geodistill-tune-{i}")
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


def _check_claim(study_dir: Path, record: dict[str, str]) -> bool:
    """True when the study folder is already ``record``'s; refuses a folder that holds another study."""
    path = study_dir / "study.json"
    if not path.is_file():
        return False
    try:
        theirs = json.loads(path.read_text())
    except ValueError:
        theirs = {}
    if theirs != record:
        raise GeodistillError(
            f"{study_dir}: holds study {theirs.get('study')!r} on {theirs.get('storage')}, "
            f"not {record['study']!r} on {record['storage']}; use another run_dir"
        )
    return True


def _claim_folder(study_dir: Path, record: dict[str, str]) -> None:
    """A study folder belongs to one study: refuse to mix trial folders of two studies. Call it once the
    storage has opened, so a mistyped URL never claims the folder for a study that does not exist."""
    if not _check_claim(study_dir, record):
        _write_atomic(study_dir / "study.json", (json.dumps(record, indent=2) + "\n").encode())


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
    study_dir = output_dir(cfg.run_dir, "tune")
    name = study_name or study_dir.resolve().name
    label = mask_url(url)
    record = {"study": name, "storage": label if storage else STORAGE_FILE}
    if not cfg.teacher_cache:
        cfg = dataclasses.replace(cfg, teacher_cache=str((study_dir / "teacher_cache").resolve()))
    with hold(study_dir, "geodistill tune"), _study_log(study_dir):
        _check_claim(study_dir, record)  # another study's folder: refused before the storage is touched
        open_study(cfg, url, name, n_trials, heartbeat_s)  # an unreachable server: one error, not W
        _claim_folder(study_dir, record)
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
            _spawn_workers(cfg, url, name, n_trials, timeout, heartbeat_s, workers)
        summary = write_outputs(optuna.load_study(study_name=name, storage=url), study_dir, label)
        log.info("best: trial %s, WER %s, params %s", summary["trial"], summary["value"], summary["params"])
    return summary
