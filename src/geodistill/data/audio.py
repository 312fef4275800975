"""Audio in: soundfile decodes (WAV, FLAC, OGG and what else libsndfile reads), mono mix, soxr resampling.

Every failure becomes a :class:`BadSampleError` naming the file and the reason, so the data layer can log
it and move on. ``probe`` is the cheap scan-time check (header + a read at the very end); ``load_audio``
decodes for real.

Audio held inside a ``datasets`` dataset saved with ``save_to_disk`` is referenced as
``hf://<dataset dir>#<row>``; its bytes are read with the audio column cast to ``Audio(decode=False)`` so
decoding stays on soundfile (``datasets`` 5 would otherwise need torchcodec).
"""

from __future__ import annotations

import functools
import io
import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from geodistill.data.bad import BadSampleError
from geodistill.optional import require

SAMPLE_RATE = 16000  # Whisper's input rate: 30 s -> 480000 samples -> 3000 log-Mel frames
HF_PREFIX = "hf://"  # audio reference into a saved datasets dataset: hf://<dir>#<row>
TAIL_FRAMES = 1024  # frames read at the end of a file to prove it is not truncated
NON_FINITE = "non-finite samples (NaN/inf)"  # a float file's NaN or inf would poison features and losses


def non_finite(samples: np.ndarray) -> str | None:
    """The bad-sample reason when ``samples`` hold NaN or inf (how many of how many), else None."""
    bad = samples.size - int(np.isfinite(samples).sum())
    return f"{NON_FINITE}: {bad} of {samples.size}" if bad else None


def hf_ref(folder: str | Path, row: int) -> str:
    return f"{HF_PREFIX}{Path(folder).resolve()}#{row}"


@functools.lru_cache(maxsize=8)
def open_hf_dataset(folder: str) -> tuple[object, str]:
    """(dataset, its audio column's name), the column cast to ``Audio(decode=False)``. Cached per process.

    Needs the optional ``datasets`` package (``geodistill[hf]``); MissingDependencyError says so if absent.
    """
    datasets = require("datasets", "hf", f"{folder}: reading a saved datasets dataset")
    try:
        ds = datasets.load_from_disk(folder)
    except (OSError, ValueError) as e:  # FileNotFoundError: no dataset_info.json / state.json / arrow files
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise BadSampleError(folder, f"not a dataset saved with save_to_disk ({reason})") from None
    if isinstance(ds, datasets.DatasetDict):
        raise BadSampleError(
            folder, f"holds several splits {sorted(ds)}: pass one, e.g. {folder}/{next(iter(ds))}"
        )
    names = [k for k, v in ds.features.items() if isinstance(v, datasets.Audio)]
    if not names and "audio" in ds.column_names:
        names = ["audio"]
    if not names:
        raise BadSampleError(folder, f"no audio column (columns: {', '.join(ds.column_names)})")
    return ds.cast_column(names[0], datasets.Audio(decode=False)), names[0]


def _hf_bytes(ref: str) -> tuple[bytes | None, str | None]:
    folder, _, row = ref[len(HF_PREFIX) :].rpartition("#")
    ds, col = open_hf_dataset(folder)
    if not row.isdigit() or int(row) >= len(ds):
        raise BadSampleError(ref, f"no row {row} in a dataset of {len(ds)} rows")
    cell = ds[int(row)][col] or {}
    return cell.get("bytes"), cell.get("path")


def _source(ref: str | Path) -> tuple[str | io.BytesIO, int]:
    """Something soundfile can open, and its size in bytes; missing and empty inputs are bad samples."""
    ref = str(ref)
    if ref.startswith(HF_PREFIX):
        data, path = _hf_bytes(ref)
        if data is None:
            if path and os.path.isfile(path):
                return path, os.path.getsize(path)
            raise BadSampleError(ref, "row has no audio bytes and no readable file path")
        if not data:
            raise BadSampleError(ref, "empty audio (0 bytes)")
        return io.BytesIO(data), len(data)
    if not os.path.exists(ref):
        raise BadSampleError(ref, "file not found")
    if not os.path.isfile(ref):
        raise BadSampleError(ref, "not a regular file")
    size = os.path.getsize(ref)
    if size == 0:
        raise BadSampleError(ref, "empty file (0 bytes)")
    return ref, size


def _message(err: Exception) -> str:
    return (getattr(err, "error_string", None) or str(err).split(": ", 1)[-1]).strip()


def _open(ref: str, src: str | io.BytesIO) -> sf.SoundFile:
    """Open for reading; a format soundfile cannot read becomes a BadSampleError saying which."""
    try:
        return sf.SoundFile(src)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise BadSampleError(ref, _open_reason(ref, e)) from None


def _open_reason(ref: str, err: Exception) -> str:
    msg = _message(err)
    ext = Path(ref.split("#")[0]).suffix.lower().lstrip(".")
    known = {"wav", "flac", "ogg", "oga", "opus", "mp3", "aif", "aiff", "au", "caf", "w64", "rf64"}
    if ext and ext not in known and ext.upper() not in sf.available_formats():
        return f"unsupported audio format '.{ext}' (soundfile reads wav, flac, ogg, mp3, ...)"
    return f"cannot decode audio ({msg})"


def _wav_shortfall(head: bytes, size: int) -> str | None:
    """A reason when a RIFF/WAVE header promises more audio bytes than the file holds (cut-off download)."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        cid, n = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if cid == b"data":
            have = size - (pos + 8)
            if n != 0xFFFFFFFF and n > have:  # 0xFFFFFFFF: streamed WAV of unknown length
                return f"truncated WAV (header promises {n} audio bytes, file holds {have})"
            return None
        pos += 8 + n + (n & 1)
    return None


def _read_head(src: str | io.BytesIO, n: int = 4096) -> bytes:
    if isinstance(src, io.BytesIO):
        return src.getvalue()[:n]
    with open(src, "rb") as f:
        return f.read(n)


def probe(ref: str | Path) -> float:
    """Duration in seconds from the header, after proving the file opens and its last frames decode.

    Raises BadSampleError (missing, empty, unsupported, corrupt or truncated). Cheap: no full decode.
    """
    ref = str(ref)
    src, size = _source(ref)
    reason = _wav_shortfall(_read_head(src), size)
    if reason:
        raise BadSampleError(ref, reason)
    with _open(ref, src) as f:
        frames, rate = f.frames, f.samplerate
        try:
            if frames > 0:
                f.seek(max(0, frames - TAIL_FRAMES))
                f.read(TAIL_FRAMES, dtype="float32")
        except (RuntimeError, OSError, ValueError) as e:
            raise BadSampleError(ref, f"truncated or corrupt audio ({_message(e)})") from None
    return frames / rate


def _decode(ref: str, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    src, size = _source(ref)
    reason = _wav_shortfall(_read_head(src), size)
    if reason:
        raise BadSampleError(ref, reason)
    with _open(ref, src) as f:
        rate = f.samplerate
        start = int(round(offset * rate))
        if start and start >= f.frames:
            raise BadSampleError(ref, f"offset {offset:g} s is past the end ({f.frames / rate:.2f} s)")
        n = -1 if duration is None else int(round(duration * rate))
        try:
            if start:
                f.seek(start)
            x = f.read(n, dtype="float32", always_2d=True)
        except (RuntimeError, OSError, ValueError) as e:
            raise BadSampleError(ref, f"truncated or corrupt audio ({_message(e)})") from None
    reason = non_finite(x)
    if reason:
        raise BadSampleError(ref, reason)
    return x, rate


def load_audio(utt_or_path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode an Utterance (honouring offset/duration; its ``samples`` when it holds them) or a path/``hf://``
    reference.

    Returns float32 mono samples at ``sample_rate``, shape (n_samples,). Channels are averaged; resampling
    uses soxr (high quality). Raises BadSampleError (a DataError) naming the file and the reason, NaN or inf
    samples included (``NON_FINITE``).
    """
    samples = getattr(utt_or_path, "samples", None)
    if samples is not None:  # decoded already, at SAMPLE_RATE (a streamed hub: row)
        if sample_rate != SAMPLE_RATE and samples.size:
            samples = soxr.resample(samples, SAMPLE_RATE, sample_rate, quality="HQ")
        return np.ascontiguousarray(samples, dtype=np.float32)
    ref = str(getattr(utt_or_path, "audio", utt_or_path))
    offset = float(getattr(utt_or_path, "offset", 0.0) or 0.0)
    duration = getattr(utt_or_path, "duration", None)  # NeMo: the segment [offset, offset + duration)
    x, rate = _decode(ref, offset, duration)
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if rate != sample_rate and mono.size:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
