"""One writer per output folder: a run folder, a teacher cache, a tuning study.

``hold(folder, what)`` takes an exclusive ``filelock`` lock (``flock`` on POSIX) on
``folder/.geodistill.lock`` for as long as the ``with`` block lasts; a second process asking for the same
folder is refused at once with a one-line error naming the holder (pid, host, command, since when), read
from the ``.geodistill.lock.json`` record the holder wrote. The operating system drops the lock when its
process dies, so a lock left by a killed process (its record still naming a pid that no longer runs)
never blocks: the next run simply takes it over.

The record holds the pid, host, command name and start time, never the command line: that may carry a
storage URL with its password (``--storage postgresql://user:pw@host/db``), and a killed process leaves
its record behind. It is readable by its owner only (0600).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from geodistill.errors import GeodistillError
from geodistill.outdir import output_dir

LOCK = ".geodistill.lock"
HOLDER = ".geodistill.lock.json"


def _holder(folder: Path) -> str:
    """The holder as "pid N on host H (command, since T)", or a plain phrase when its record is unreadable."""
    try:
        h = json.loads((folder / HOLDER).read_text(encoding="utf-8"))
        return f"pid {h['pid']} on host {h['host']} ({h['command']}, since {h['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (its record is not written yet)"


def _record(folder: Path, what: str) -> None:
    """Write the holder's record atomically, owner-only from its first byte: the temporary file is created
    0600 (and chmod-ed, should one with that name be left over) before the record is written into it."""
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": what,
        "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    tmp = folder / f".{HOLDER}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fd, 0o600)
        fh.write(json.dumps(record, indent=1))
    os.replace(tmp, folder / HOLDER)


@contextlib.contextmanager
def hold(folder: str | Path, what: str) -> Iterator[Path]:
    """Hold ``folder`` (created if missing) exclusively while the block runs; yields the folder.

    what: the command taking it ("geodistill train"), shown to whoever is refused. Raises a one-line
    GeodistillError when another live process holds it.
    """
    folder = output_dir(folder, what)
    lock = FileLock(str(folder / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise GeodistillError(
            f"{folder}: in use by {_holder(folder)}; wait for it to finish, or stop it (a killed "
            "process's lock is released by the system)"
        ) from None
    try:
        _record(folder, what)
        yield folder
    finally:
        with contextlib.suppress(OSError):
            (folder / HOLDER).unlink()
        lock.release()
