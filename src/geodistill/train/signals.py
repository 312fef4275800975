"""SIGTERM / SIGINT -> finish the current step, checkpoint, exit 143 / 130 (the shell's convention)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

EXIT_CODES: dict[int, int] = {signal.SIGTERM: 143, signal.SIGINT: 130}
# what signal.signal returns and takes: a function, SIG_DFL / SIG_IGN, or None (not installed from Python)
Handler = Callable[[int, FrameType | None], Any] | int | None


class StopFlag:
    """Installs handlers that only record the signal; the loop checks ``requested`` at step boundaries."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Handler] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 1) if self.signum is not None else 0

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> StopFlag:
        for sig in EXIT_CODES:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. inside some test runners): no handler
                pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
