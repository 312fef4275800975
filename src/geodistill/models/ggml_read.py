"""Read a whisper.cpp model file back (``read_ggml``) and check it the way whisper.cpp's loader will
(``check_loadable``): the round-trip tests compare it with the HF weights, and the engine refuses a file
whisper.cpp would crash on before whisper.cpp sees it."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from geodistill.errors import ModelLoadError
from geodistill.models.ggml import (
    DTYPES,
    FTYPES,
    GGML_MAGIC,
    HPARAMS,
    MAX_NAME,
    N_FFT,
    Q8_BLOCK,
    Q8_DTYPE,
    QNT_VERSION_FACTOR,
    T_F32,
    T_Q8_0,
    TYPE_NAMES,
    dequantize_q8_0,
    expected_shapes,
    nbytes,
    storage_type,
)


@dataclass
class GgmlModel:
    """A parsed whisper.cpp model file. ``tensors`` are float32 (q8_0 dequantised) in numpy order
    (outermost dimension first, as the HF weights; conv biases (n, 1)); ``types`` holds each one's stored
    type (``f32``, ``f16``, ``q8_0``). ``tensors`` is empty when read with ``load_tensors=False``."""

    path: Path
    hparams: dict[str, int]
    mel_filters: np.ndarray
    vocab: list[bytes]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def dtype(self) -> str:
        """The file's type name, from ``ftype`` (quantisation version stripped)."""
        code = self.hparams["ftype"] % QNT_VERSION_FACTOR
        return {v: k for k, v in FTYPES.items()}.get(code, f"ftype {code}")


class _Cursor:
    """Reads a file front to back, turning a short read into a one-line ModelLoadError."""

    def __init__(self, path: Path, f: BinaryIO):
        self.path, self.f = path, f
        self.size = os.fstat(f.fileno()).st_size

    @property
    def pos(self) -> int:
        return self.f.tell()

    def error(self, reason: str) -> ModelLoadError:
        return ModelLoadError(f"{self.path}: not a usable whisper.cpp model file ({reason})")

    def _check(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            have = self.size - self.pos
            raise self.error(f"truncated: {what} needs {n} bytes at offset {self.pos}, {have} left")

    def take(self, n: int, what: str) -> bytes:
        self._check(n, what)
        return self.f.read(n)

    def skip(self, n: int, what: str) -> None:
        self._check(n, what)
        self.f.seek(n, os.SEEK_CUR)

    def ints(self, count: int, what: str, fmt: str = "i") -> tuple[int, ...]:
        return struct.unpack(f"<{count}{fmt}", self.take(4 * count, what))


def read_ggml(path: Path, load_tensors: bool = True) -> GgmlModel:
    """Parse a whisper.cpp model file (f32, f16 and q8_0 tensors).

    Raises a one-line ModelLoadError naming the file and what is wrong: unreadable, bad magic, an
    unknown tensor type, a size that disagrees with the header, or data cut short. With
    ``load_tensors=False`` the tensor data is skipped (still checked to be all there), which makes it a
    cheap check of a file before whisper.cpp, which does not check for short reads, is given it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _parse(_Cursor(path, f), load_tensors)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read the whisper.cpp model ({exc.strerror or exc})") from exc


def _parse(cur: _Cursor, load_tensors: bool) -> GgmlModel:
    (magic,) = cur.ints(1, "the magic number", "I")
    if magic != GGML_MAGIC:
        raise cur.error(f"bad magic 0x{magic:08x}, expected 0x{GGML_MAGIC:08x} 'ggml'")
    hparams = dict(zip(HPARAMS, cur.ints(len(HPARAMS), "the hyperparameters"), strict=True))
    if any(v < 0 for v in hparams.values()):
        raise cur.error(f"negative hyperparameter in {hparams}")
    n_mel, n_fft = cur.ints(2, "the Mel filter sizes")
    if n_mel < 0 or n_fft < 0:
        raise cur.error(f"Mel filter bank of {n_mel} x {n_fft}")
    filters = np.frombuffer(cur.take(4 * n_mel * n_fft, "the Mel filters"), "<f4").reshape(n_mel, n_fft)
    (n_tokens,) = cur.ints(1, "the vocabulary size")
    if n_tokens < 0:
        raise cur.error(f"vocabulary of {n_tokens} tokens")
    vocab = []
    for i in range(n_tokens):
        (length,) = cur.ints(1, f"token {i}'s length", "I")
        vocab.append(cur.take(length, f"token {i}"))
    model = GgmlModel(cur.path, hparams, filters.astype(np.float32), vocab)
    while cur.pos < cur.size:
        i = len(model.types)
        n_dims, name_len, ttype = cur.ints(3, f"tensor {i}'s header")
        if not 1 <= n_dims <= 4 or not 0 < name_len <= MAX_NAME:
            raise cur.error(f"tensor {i} has a bad header ({n_dims} dims, a name of {name_len} bytes)")
        dims = cur.ints(n_dims, f"tensor {i}'s dimensions")
        name = cur.take(name_len, f"tensor {i}'s name").decode("utf-8", "replace")
        if ttype not in TYPE_NAMES:
            raise cur.error(f"tensor {name!r} has unknown type {ttype} (known: f32 0, f16 1, q8_0 8)")
        if any(x <= 0 for x in dims) or (ttype == T_Q8_0 and dims[0] % Q8_BLOCK):
            raise cur.error(f"tensor {name!r} has impossible dimensions {list(dims)} for {TYPE_NAMES[ttype]}")
        shape = tuple(reversed(dims))
        size = nbytes(int(np.prod(shape)), ttype)
        model.types[name], model.shapes[name] = TYPE_NAMES[ttype], shape
        if not load_tensors:
            cur.skip(size, f"tensor {name!r}")
            continue
        raw = cur.take(size, f"tensor {name!r}")
        if ttype == T_Q8_0:
            values = dequantize_q8_0(np.frombuffer(raw, Q8_DTYPE))
        else:
            values = np.frombuffer(raw, "<f4" if ttype == T_F32 else "<f2").astype(np.float32)
        model.tensors[name] = values.reshape(shape)
    return model


def check_loadable(model: GgmlModel) -> None:
    """Raise a one-line ModelLoadError unless whisper.cpp's loader would accept ``model``'s layout: its
    ftype, Mel filter bank, and exactly the tensors the loader creates, each with its shape and type.

    whisper.cpp reports a refused file only in its log and pywhispercpp then hands back a context that
    crashes the process on first use, so the engine checks here first (``read_ggml(load_tensors=False)``).
    """
    hp, where = model.hparams, f"{model.path}: not a model whisper.cpp can load"
    dtype = model.dtype
    if dtype not in FTYPES:
        raise ModelLoadError(f"{where} ({dtype} is not one of {', '.join(DTYPES)})")
    if hp["n_audio_state"] != hp["n_text_state"]:
        raise ModelLoadError(f"{where} (encoder width {hp['n_audio_state']} != decoder {hp['n_text_state']})")
    if model.mel_filters.shape != (hp["n_mels"], N_FFT // 2 + 1):
        raise ModelLoadError(f"{where} (Mel filters {model.mel_filters.shape} for {hp['n_mels']} Mel bins)")
    expected = expected_shapes(hp)
    unknown = [n for n in model.shapes if n not in expected]
    if unknown:
        raise ModelLoadError(f"{where} (unknown tensor {unknown[0]!r})")
    missing = [n for n in expected if n not in model.shapes]
    if missing:
        raise ModelLoadError(f"{where} ({len(missing)} tensors missing, e.g. {missing[0]!r})")
    for name, shape in expected.items():
        want = storage_type(name, len(shape), dtype)
        if model.shapes[name] != shape or model.types[name] != want:
            got = f"{model.types[name]} {model.shapes[name]}"
            raise ModelLoadError(f"{where} (tensor {name!r} is {got}, the loader expects {want} {shape})")
