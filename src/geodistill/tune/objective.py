"""The objective: one trial is one training run in ``<study folder>/trial-<n>/``, reporting its validation
WER to the pruner; a failed trial leaves its traceback behind."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import logging
import math
import os
import socket
import traceback
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from geodistill.config import Config
from geodistill.errors import GeodistillError
from geodistill.tune.space import suggest, trial_config

log = logging.getLogger("geodistill.tune")  # one logger for the package: study_log attaches to it
RECORDED = "geodistill_error_file"  # set on an exception record_failure has written to the trial's error.txt


def sampler_seed(cfg: Config, n_existing: int, shared: bool) -> int:
    """The sampler's seed for a worker joining a study that holds ``n_existing`` trials.

    A continued study must not replay the first run's random start-up points, and workers sharing a
    study (``shared``) must not draw the same points at the same time."""
    seed = cfg.train.seed + n_existing
    if shared:
        seed += zlib.crc32(f"{socket.gethostname()}:{os.getpid()}".encode())
    return seed % 2**32


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
    with contextlib.suppress(AttributeError, TypeError):  # an exception type that takes no attributes
        setattr(exc, RECORDED, str(run_dir / "error.txt"))  # Optuna need not print it again (study_log)
    trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
    log.warning(
        "trial %d failed: %s: %s (traceback in %s)",
        trial.number,
        type(exc).__name__,
        exc,
        run_dir / "error.txt",
    )


def _free_memory() -> None:
    import torch  # noqa: PLC0415 (tune workers start light; the training stack loads with the first trial)

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
            from geodistill.teacher.factory import load_teacher  # noqa: PLC0415 (tune workers start light; the training stack loads with the first trial)

            self._teacher = load_teacher(self.cfg)
        return self._teacher

    def teacher_outputs(self):
        """The study's cached teacher outputs (None without a cache); loads the teacher on first use."""
        if self._provider is None and self.cfg.teacher_cache:
            from geodistill.students.seq2seq.sharing import cross_kv_plan  # noqa: PLC0415 (tune workers start light; the training stack loads with the first trial)
            from geodistill.teacher.factory import make_teacher  # noqa: PLC0415 (tune workers start light; the training stack loads with the first trial)

            teacher = self.teacher()
            # The base config's student decides which cross-attention K/V are stored.
            layers = tuple(cross_kv_plan(self.cfg, teacher[0].config).values())
            with _file_lock(self.study_dir / "teacher_cache.lock"):
                self._provider = make_teacher(self.cfg, teacher, cross_kv_layers=layers)
        return self._provider

    def __call__(self, trial: optuna.Trial) -> float:
        params = {name: suggest(trial, name, dist) for name, dist in self.space.items()}
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

        cfg = trial_config(self.cfg, params, run_dir, self.steps)
        from geodistill.train import loop as training  # noqa: PLC0415 (tune workers start light; the training stack loads with the first trial)

        result = training.train(
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
