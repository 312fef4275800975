"""Audio durations for ``load_spec``: every file probed once, in parallel, and the answers stored.

A start (training, a resume, another rank, ``cache``, ``evaluate``, ``data scan``) needs each listed file's
duration and proof that it decodes (``audio.probe``: header + a read at the end). At a million files, one
after another, that is a long silent wait on every start. Here:

- the files are probed by a thread pool (libsndfile runs outside the GIL), behind a progress bar that is
  shown only on a terminal;
- each answer (its duration, or why the file is unusable) is stored per data spec, keyed by the file's
  path, size and modification time (ns), so the next start only ``stat``-s the files and probes just the
  new or changed ones;
- one process probes at a time: the store is read, completed and written under a file lock, so the ranks
  of a launch (and several jobs on one data set) probe once between them: the first to take the lock
  probes, the others wait and then find every answer stored. A lock rather than "rank 0 probes, then a
  barrier" because ``load_spec`` is also called by rank 0 alone (validation, reports), where a barrier
  would wait forever.

The store is one JSON file a spec, ``<cache>/probes/<sha256 of kind:absolute path>.json`` (``cache`` as in
``geodistill.paths``): the data folder itself may be read-only or shared, the per-user cache is writable.
Its rows are ``path: [size, mtime_ns, seconds | null, bad item | null, reason | null]``; a store that cannot
be read or written only costs the probing it would have saved (one warning). Audio inside a saved
``datasets`` dataset (``hf://`` references) has no file of its own to stat: it is probed each start, in
order, as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from filelock import FileLock

from geodistill.data.audio import HF_PREFIX, probe
from geodistill.data.bad import BadSampleError
from geodistill.paths import cache_dir
from geodistill.progress import progress

log = logging.getLogger("geodistill")

FORMAT = 1  # bump when probe() or the row layout changes: older stores are then ignored
THREADS = min(16, 2 * (os.cpu_count() or 1))  # page-cached files: more threads gained nothing here
CHUNK = 128  # files a task
Outcome = float | BadSampleError  # a file's duration in seconds, or why it is unusable


def store_path(kind: str, path: Path) -> Path:
    """Where the probes of the data spec ``kind:path`` are stored."""
    key = hashlib.sha256(f"{kind}:{Path(path).resolve()}".encode()).hexdigest()[:20]
    return cache_dir() / "probes" / f"{key}.json"


def _probe_one(ref: str) -> Outcome:
    try:
        return probe(ref)
    except BadSampleError as exc:
        return exc


def _read_store(store: Path) -> dict[str, list]:
    try:
        data = json.loads(store.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s: unreadable probe store, probing again (%s)", store, exc)
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _write_store(store: Path, rows: dict[str, list]) -> None:
    tmp = store.with_name(f".{store.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps({"format": FORMAT, "files": rows}), encoding="utf-8")
        os.replace(tmp, store)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("%s: cannot store the probed durations (%s); the next start probes again", store, exc)


def _outcome(row: list) -> Outcome:
    seconds, item, reason = row[2:5]
    return float(seconds) if reason is None else BadSampleError(item, reason)


def _row(stat: os.stat_result, outcome: Outcome) -> list:
    if isinstance(outcome, BadSampleError):
        return [stat.st_size, stat.st_mtime_ns, None, str(outcome.item), outcome.reason]
    return [stat.st_size, stat.st_mtime_ns, outcome, None, None]


def _probe_chunk(refs: list[str]) -> list[Outcome]:
    return [_probe_one(r) for r in refs]


def probe_parallel(refs: list[str], threads: int = THREADS) -> dict[str, Outcome]:
    """``probe`` of each ref on ``threads`` threads, CHUNK files a task (a future per file costs as much as
    probing a cached file), with a progress bar on a terminal."""
    if not refs:
        return {}
    chunks = [refs[i : i + CHUNK] for i in range(0, len(refs), CHUNK)]
    bar = progress(total=len(refs), desc="probe audio", unit="file", leave=False)
    found: dict[str, Outcome] = {}
    with bar, ThreadPoolExecutor(max(1, threads)) as pool:
        for chunk, outcomes in zip(chunks, pool.map(_probe_chunk, chunks), strict=True):
            found.update(zip(chunk, outcomes, strict=True))
            bar.update(len(chunk))
    return found


def _stat(ref: str) -> os.stat_result | None:
    try:
        return os.stat(ref)
    except (OSError, ValueError):  # missing, unreadable, or a name the OS refuses: probe says which
        return None


def _fill(refs: list[str], stored: dict[str, list], threads: int) -> tuple[dict[str, Outcome], dict, int]:
    """(outcomes, the rows to store, how many files were probed) for file refs, reusing fresh rows."""
    stats = {ref: _stat(ref) for ref in refs}  # a few microseconds each: a pool would cost more
    found: dict[str, Outcome] = {}
    stale = []
    for ref, st in stats.items():
        row = stored.get(ref)
        if st is not None and row is not None and row[:2] == [st.st_size, st.st_mtime_ns]:
            found[ref] = _outcome(row)
        else:
            stale.append(ref)
    probed = probe_parallel(stale, threads)
    found.update(probed)
    rows = {ref: stored[ref] for ref in refs if ref in found and ref not in probed}
    for ref, outcome in probed.items():
        st = stats[ref]
        if st is not None:  # a file that could not be stat-ed is probed again next time (it is quick)
            rows[ref] = _row(st, outcome)
    return found, rows, len(probed)


def probe_files(refs: Iterable[str], store: Path | None, threads: int = THREADS) -> dict[str, Outcome]:
    """Duration (or BadSampleError) of each distinct ref, from ``store`` where the file is unchanged.

    ``store`` None probes everything and stores nothing. See the module docstring for the lock and layout.
    """
    unique = list(dict.fromkeys(refs))
    files = [r for r in unique if not r.startswith(HF_PREFIX)]
    found: dict[str, Outcome] = {r: _probe_one(r) for r in unique if r.startswith(HF_PREFIX)}
    if store is None:
        found.update(probe_parallel(files, threads))
        return found
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(store) + ".lock")
        lock.acquire()
    except OSError as exc:
        log.warning("%s: cannot lock the probe store (%s); probing without it", store, exc)
        found.update(probe_parallel(files, threads))
        return found
    try:
        stored = _read_store(store)
        outcomes, rows, n_probed = _fill(files, stored, threads)
        if n_probed or rows.keys() != stored.keys():
            _write_store(store, rows)
    finally:
        lock.release()
    found.update(outcomes)
    return found
