"""Output folders and write failures as one-line errors: a path that is a file, a full disk, no permission."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from geodistill.errors import StorageError

# errno values that are about the place written to, not a bug: reported as one line naming the path.
ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.EISDIR,
        errno.ENAMETOOLONG,
        errno.EIO,
    }
)


def reason(exc: BaseException) -> str:
    """The cause of a failed write in a few words ("no space left on device", "not a directory", ...).

    Knows OSError (by errno) and safetensors' SafetensorError, which reports an OS error only in its text;
    an error raised while handling an OSError (torch.save's RuntimeError on a full disk) gives that one's.
    """
    inner = exc.__cause__ or exc.__context__
    if not isinstance(exc, OSError) and isinstance(inner, OSError):
        return reason(inner)
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "StorageFull" in text:
        return "no space left on device"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return text.splitlines()[0] if text else type(exc).__name__


def output_dir(path: str | Path, what: str) -> Path:
    """Create the output folder ``path`` (and its parents) if needed; returns it as a Path.

    A path that is (or runs through) a file, or that cannot be created, is a one-line StorageError
    naming the path, the command (``what``) and the reason.
    """
    path = Path(path)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        where = "is a file" if blocker == path else f"cannot be created: {blocker} is a file"
        raise StorageError(f"{path}: {what} output folder {where}; choose a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{path}: cannot create the {what} output folder ({reason(exc)})") from None
    return path


def _swap(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` in the place of ``out`` (an existing ``out`` goes aside, then away)."""
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """A new temporary sibling of ``out`` (``.NAME.tmp``) for the block to fill; it replaces ``out`` when
    the block ends. When the block raises (an interrupt included) the temporary folder is removed and
    ``out`` is left as it was: nobody ever sees a half-written folder at ``out``."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed process
    try:
        tmp.mkdir(parents=True)
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap(tmp, out)


def replace_folder(out: str | Path, write: Callable[[Path], None], what: str) -> None:
    """Write a folder atomically: ``write(tmp)`` fills a new temp folder, which then replaces ``out``.

    A crash never leaves a half-written folder; a failed write (disk full: safetensors and tokenizers
    report it with their own error types) removes the temp folder and is a one-line StorageError that
    leaves ``out`` as it was.
    """
    out = Path(out)
    try:
        with staged_folder(out) as tmp:
            write(tmp)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        kept = "the previous one is intact" if out.exists() else "nothing was saved"
        raise StorageError(f"{out}: cannot save {what} ({reason(exc)}); {kept}") from exc


def _stage(path: Path, data: bytes, what: str, kept: str) -> Path:
    """``data`` in a temporary sibling of ``path`` (``.NAME.tmp``), returned; a failed write removes it and
    is a one-line StorageError naming ``path`` (an OSError of a write names no file); an interrupt removes
    it too."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StorageError(f"{path}: cannot write {what} ({reason(exc)}); {kept}") from exc
        raise
    return tmp


def write_file(path: str | Path, data: bytes, what: str, kept: str) -> None:
    """Replace the file ``path`` by ``data`` atomically: written to a temporary sibling, renamed over
    ``path`` last. A failed write (a full disk) leaves no temporary file and is a one-line StorageError
    naming ``path``, the reason and ``kept`` (what the user still has: "the previous one is intact")."""
    path = Path(path)
    os.replace(_stage(path, data, what, kept), path)


def replace_files(files: dict[Path, bytes | None], what: str) -> None:
    """Replace several files as one result (``None``: remove that file): every one is written to a
    temporary sibling first, then they are renamed into place in the order given. The last one marks the
    set complete: it is removed before the first rename and renamed last, so it never stands beside a mix
    of old and new files.

    A failed write (a full disk) happens before any rename: the temporary files are removed, every old
    file is left as it was, and it is a one-line StorageError naming the file. An interrupt while writing
    removes the temporary files too.
    """
    *_, last = files
    kept = "the previous results are intact" if last.exists() else "nothing was saved"
    staged: list[tuple[Path, Path | None]] = []
    try:
        for path, data in files.items():
            staged.append((path, None if data is None else _stage(path, data, what, kept)))
    except BaseException:
        for _, tmp in staged:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
        raise
    last.unlink(missing_ok=True)
    for path, tmp in staged:
        if tmp is None:
            path.unlink(missing_ok=True)
        else:
            os.replace(tmp, path)
