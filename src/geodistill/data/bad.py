"""The bad-sample log: every item the data layer could not use, with the reason, as it happens.

Nothing is dropped silently: unreadable audio, empty transcripts and clips outside the duration window all
end up here. ``bad_samples.jsonl`` holds one ``{"item": ..., "reason": ...}`` object a line. In strict mode
the first bad item stops the run with a one-line :class:`BadSampleError` naming the item and the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from geodistill.errors import DataError


class BadSampleError(DataError):
    """One unusable item (file, transcript line, dataset row); ``str()`` is ``"<item>: <reason>"``."""

    def __init__(self, item: str, reason: str):
        super().__init__(f"{item}: {reason}")
        self.item = item  # the file / line / row that is unusable
        self.reason = reason  # why, in a few words


def item_name(item) -> str:
    """A printable name for ``item``: an Utterance becomes its audio reference (+ segment), else ``str``."""
    audio = getattr(item, "audio", None)
    if audio is None:
        return str(item)
    offset, duration = getattr(item, "offset", 0.0), getattr(item, "duration", None)
    if offset:
        end = f"{offset + duration:.2f}s" if duration is not None else "end"
        return f"{audio}[{offset:.2f}s-{end}]"
    return str(audio)


class BadSamples:
    """Collects bad items; appends each to ``path`` (JSONL) at once so DataLoader workers' finds survive.

    ``count``/``items`` read the file back when there is one, so they include what worker processes
    (which hold pickled copies of this object) added; lines that were in the file before this object was
    created are not counted. Without a path, only this process's items are known.
    """

    def __init__(self, path: str | Path | None = None, strict: bool = False):
        self.path = Path(path) if path is not None else None
        self.strict = strict
        self._items: list[dict] = []
        self._skip = 0  # lines already in the file (an earlier run's) that are not ours
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.is_file():
                self._skip = len(self._read_lines())

    def add(self, item, reason: str) -> None:
        """Record ``item`` (path, ``file:line``, row reference or Utterance) as unusable for ``reason``."""
        entry = {"item": item_name(item), "reason": str(reason)}
        self._items.append(entry)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        if self.strict:
            raise BadSampleError(entry["item"], entry["reason"])

    def _read_lines(self) -> list[str]:
        with open(self.path, encoding="utf-8", errors="replace") as f:
            return [line for line in f if line.strip()]

    @property
    def items(self) -> list[dict]:
        """Every bad item recorded since this object was made (all processes when there is a file)."""
        if self.path is None or not self.path.is_file():
            return list(self._items)
        return [json.loads(line) for line in self._read_lines()[self._skip :]]

    @property
    def count(self) -> int:
        return len(self.items)
