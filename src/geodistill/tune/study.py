"""``geodistill tune``: check the tuning arguments, then run (or continue) the TPE study with the shared
``StudyRunner`` and write the study folder's summary."""

from __future__ import annotations

import logging
from typing import Any

from geodistill.config import Config, ConfigError
from geodistill.errors import GeodistillError
from geodistill.tune.outputs import write_outputs
from geodistill.tune.runner import StudyRunner
from geodistill.tune.space import search_space
from geodistill.tune.storage import HEARTBEAT_S, is_sqlite, storage_url

log = logging.getLogger("geodistill.tune")


def check_tune_args(
    cfg: Config, n_trials: int, timeout: float | None, workers: int, heartbeat_s: int
) -> None:
    """Raise one ConfigError listing every bad tuning argument and ``cfg.tune`` setting, before any work."""
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
    if workers > 1 and is_sqlite(url):
        raise GeodistillError(
            f"workers={workers} needs a database server, not SQLite: SQLite's file locking is "
            "unreliable with several processes writing at once (Optuna's docs advise an RDB); "
            "pass --storage postgresql://user@host/db"
        )
    search_space(cfg)  # every problem with the space, before any trial
    runner = StudyRunner(cfg, storage, study_name, command="tune", workers=workers, heartbeat_s=heartbeat_s)
    cfg, name, label = runner.cfg, runner.name, runner.label
    with runner.session():
        runner.open(n_trials)  # an unreachable server: one error, not W
        runner.claim()
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
        runner.run(n_trials, timeout)
        summary = write_outputs(runner.load(), runner.study_dir, label)
        log.info("best: trial %s, WER %s, params %s", summary["trial"], summary["value"], summary["params"])
    return summary
