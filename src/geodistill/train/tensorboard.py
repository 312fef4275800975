"""TensorBoard event writing for training runs: a real SummaryWriter on the main process, a no-op elsewhere.

``tensorboard`` is the optional extra ``geodistill[tensorboard]`` (part of ``[all]``); it is imported only
when a writer is actually opened, so ranks that do not log and installs without it never need it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from torch.utils.tensorboard import SummaryWriter

from geodistill.optional import require

EXTRA = "tensorboard"


class ScalarWriter(Protocol):
    """What the training loop uses of SummaryWriter."""

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None) -> None: ...

    def close(self) -> None: ...


class NullWriter:
    """Stands in for SummaryWriter where nothing is logged (ranks other than 0): every call does nothing."""

    def add_scalar(self, tag: str, scalar_value: Any, global_step: int | None = None) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def open_writer(log_dir: str | Path, purge_step: int | None, enabled: bool) -> ScalarWriter:
    """A SummaryWriter on ``log_dir`` when ``enabled``, else a NullWriter (no file, no tensorboard import).

    ``purge_step``: on resume, the step the run continues from; events at or after it from the earlier
    attempt are dropped so the curves do not double back (None for a fresh run). Raises
    MissingDependencyError (one line, with the pip command) when enabled and tensorboard is missing.
    """
    if not enabled:
        return NullWriter()
    require("tensorboard", EXTRA, "TensorBoard logging (the run folder's tb/)")

    return SummaryWriter(str(log_dir), purge_step=purge_step)
