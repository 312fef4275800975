"""Output folders and write failures as one-line errors: a path that is a file, a full disk, no permission."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Callable
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


def replace_folder(out: str | Path, write: Callable[[Path], None], what: str) -> None:
    """Write a folder atomically: ``write(tmp)`` fills a new temp folder, which then replaces ``out``.

    A crash never leaves a half-written folder; a failed write (disk full: safetensors and tokenizers
    report it with their own error types) removes the temp folder and is a one-line StorageError that
    leaves ``out`` as it was.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        write(tmp)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        shutil.rmtree(tmp, ignore_errors=True)
        kept = "the previous one is intact" if out.exists() else "nothing was saved"
        raise StorageError(f"{out}: cannot save {what} ({reason(exc)}); {kept}") from exc
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
