"""Workers: run a study's trials until its budget is spent, in this process (``run_worker``) or in worker
processes spawned on this machine (``spawn_workers``), each writing the study folder's log (``study_log``).
What the trials are is a ``StudyPlan``: ``tpe_plan`` for tuning, ``ablate_plan`` for the ablation."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from geodistill.config import Config, ConfigError, from_dict, to_dict
from geodistill.errors import GeodistillError
from geodistill.tune.objective import RECORDED, Objective, sampler_seed
from geodistill.tune.outputs import write_outputs
from geodistill.tune.space import search_space
from geodistill.tune.storage import HEARTBEAT_S, BudgetSpent, budget_used, mask_url, open_study

log = logging.getLogger("geodistill.tune")  # one logger for the package: study_log attaches to it


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
    sampler = optuna.samplers.TPESampler(seed=sampler_seed(cfg, n_existing, shared), constant_liar=True)
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


class RecordedFailures(logging.Filter):
    """On Optuna's trial logger: drops its report of a failed trial (the error with its traceback, then
    "Trial N failed with value None.") when the objective has recorded that error: the tool's own line
    already names the trial's error.txt, which holds the traceback."""

    FAILED = re.compile(r"Trial (\d+) failed")

    def __init__(self) -> None:
        super().__init__()
        self.trials: set[str] = set()  # the trials whose failure is silenced

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        failed = self.FAILED.match(message)
        if failed is None:
            return True
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and hasattr(error, RECORDED):
            self.trials.add(failed.group(1))
            return False
        follow_up = error is None and "failed with value" in message
        return not (follow_up and failed.group(1) in self.trials)


@contextlib.contextmanager
def study_log(study_dir: Path, who: str = "") -> Iterator[None]:
    """While the block runs, this process's tuning messages and Optuna's trial results also go to
    ``<study folder>/tune.log``, each line tagged ``[who]`` when given (a spawned worker's index).
    Optuna prints no traceback of a trial whose error the objective has recorded (``RecordedFailures``)."""
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
    # the logger Optuna reports each trial's end on (optuna/study/_optimize.py)
    trials, recorded = logging.getLogger("optuna.study._optimize"), RecordedFailures()
    trials.addFilter(recorded)
    try:
        yield
    finally:
        trials.removeFilter(recorded)
        for logger, handler in pairs:
            logger.removeHandler(handler)
        file.close()


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
    import torch  # noqa: PLC0415 (tune workers start light; the training stack loads with the first trial)

    if "OMP_NUM_THREADS" not in os.environ:  # W workers share the cores: oversubscribed OpenMP threads spin
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    cfg = from_dict(cfg_dict)
    try:
        with study_log(Path(cfg.run_dir), f"worker {index}"):
            run_worker(cfg, url, study_name, n_trials, timeout, heartbeat_s, shared=True, plan=plan)
    except (GeodistillError, ConfigError) as exc:
        print(f"error: tuning worker {index}: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def spawn_workers(
    cfg: Config,
    url: str,
    study_name: str,
    n_trials: int,
    timeout: float | None,
    heartbeat_s: int,
    workers: int,
    plan: StudyPlan | None = None,
) -> None:
    """Run ``workers`` worker processes (``run_worker`` each, spawned: no inherited connections) and wait
    for them all; raises GeodistillError naming any that failed.

    The storage URL reaches them through the spawn pipe, never a command line or a file. A Ctrl-C here
    gives them a minute to record their running trials before they are terminated.
    """
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
