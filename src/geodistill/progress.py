"""Progress bars on long work: one tqdm bar on stderr, drawn only for a person watching a terminal.

A bar is drawn when stderr is a terminal and logging is not quiet: neither the ``geodistill.progress``
logger nor, where that one is unset, the ``geodistill`` logger is set above INFO. ``-q`` sets both to
WARNING (in Python: ``logging.getLogger("geodistill").setLevel(logging.WARNING)``); the progress logger
holds the switch on its own because a training run lowers the ``geodistill`` logger to INFO while it
writes its train.log. Stderr going to a file, a pipe or a CI log turns every bar off too: there a bar's
carriage returns would only be noise.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

LOGGER = "geodistill.progress"  # its level switches the bars: above INFO, none


def bars_on() -> bool:
    """Whether progress bars are drawn now: stderr is a terminal and logging is not quiet (``-q``)."""
    level = logging.getLogger(LOGGER).level or logging.getLogger("geodistill").level  # 0: NOTSET
    isatty = getattr(sys.stderr, "isatty", None)  # None: no stderr at all (pythonw), or a bare writer
    return level <= logging.INFO and isatty is not None and isatty()


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    show: bool = True,
    leave: bool = True,
    initial: float = 0,
) -> tqdm:
    """A tqdm bar (wrapping ``iterable`` when given), disabled unless ``show`` and ``bars_on()``.

    ``show`` is the caller's own condition (e.g. rank 0 only under torchrun); ``leave=False`` for a bar
    nested inside another (it disappears when done).
    """
    return tqdm(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        leave=leave,
        initial=initial,
        disable=not (show and bars_on()),
        file=sys.stderr,
        dynamic_ncols=True,
    )
