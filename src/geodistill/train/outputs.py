"""What training writes into its run folder besides the checkpoint (the layout: ``geodistill.runfolder``):
the config record, the run's log, and the check that a resumed run did not change what it trains."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

from geodistill.config import Config, to_dict
from geodistill.errors import GeodistillError
from geodistill.runfolder import RunFolder
from geodistill.versions import package_versions

log = logging.getLogger("geodistill")

# Changing these on resume would make the checkpoint describe a different model or data order.
INCOMPATIBLE = (
    "teacher",
    "student",
    "loss.hidden_loss",
    "loss.hidden_on",
    "train.batch_size",
    "train.grad_accum",
    "train.seed",
    "data.train",
    "data.val",
    "teacher_cache",
)


@contextlib.contextmanager
def run_log(run_dir: Path) -> Iterator[None]:
    """The run's own ``train.log`` (INFO and above from the ``geodistill`` loggers) while the run lasts.

    A run artefact like its TensorBoard events, so ``train()`` writes it; the handler and any level it
    had to lower are removed on exit. Console output is the application's choice (the CLI attaches one).
    """
    logger = logging.getLogger("geodistill")
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.INFO)
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_config(cfg: Config, run_dir: Path) -> None:
    record = {"config": to_dict(cfg), "versions": package_versions(), "git_commit": _git_commit()}
    folder = RunFolder(run_dir)
    folder.write_json(folder.record_file, record)


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested config dict as dotted keys (``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumed_config(cfg: Config, run_dir: Path) -> None:
    """Warn about changed settings on resume; refuse changes that make the checkpoint meaningless."""
    record = RunFolder(run_dir).record()
    if record is None:
        return
    old, new = flatten(record.get("config", {})), flatten(to_dict(cfg))
    diffs = sorted(
        k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and not k.startswith("tune.")
    )
    if not diffs:
        return
    lines = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diffs]
    fatal = [line for k, line in zip(diffs, lines, strict=True) if k.startswith(INCOMPATIBLE)]
    if fatal:
        raise GeodistillError(
            f"{run_dir}: cannot resume with a changed {'; '.join(fatal)} "
            "(use a new run_dir, or restore the old values)"
        )
    log.warning("resuming with changed settings: %s", "; ".join(lines))
