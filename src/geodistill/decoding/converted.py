"""Model conversions made once and kept under ``<cache>``: CTranslate2 (``ct2/``, checked against a
manifest of sizes and SHA-256 digests, rebuilt once when damaged), whisper.cpp (``ggml/``) and ONNX
(``onnx/``). Each is written into a temporary folder and renamed into place (a crash leaves nothing
half-done); an export made by ``geodistill export`` is used as it is."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

from geodistill.decoding.options import DEFAULT_COMPUTE_TYPE
from geodistill.errors import ModelLoadError
from geodistill.models import load_whisper
from geodistill.models.ct2_convert import convert_to_ct2
from geodistill.models.ggml import GGML_FILE, write_ggml_folder
from geodistill.models.integrity import manifest_problem, write_manifest
from geodistill.models.loading import (
    EMBEDDED,
    converted_dir,
    embedded_source,
    folder_reason,
    local_model_dir,
    weights_errors,
)
from geodistill.models.onnx import is_onnx_folder, write_onnx
from geodistill.optional import require
from geodistill.paths import cache_dir

log = logging.getLogger("geodistill")
GGML_REVISION = 1  # bump when a conversion changes so stale cache entries are not reused
CT2_REVISION = 2  # (2: with its manifest)
ONNX_REVISION = 1


def is_ct2_folder(folder: Path) -> bool:
    """A converter-made CTranslate2 Whisper folder (model.bin + vocabulary + tokenizer.json)."""
    vocab = (folder / "vocabulary.json").is_file() or (folder / "vocabulary.txt").is_file()
    return (folder / "model.bin").is_file() and vocab and (folder / "tokenizer.json").is_file()


def hf_folder(spec: str) -> Path:
    """The HF Whisper folder behind a model spec (embedded names and CT2 folders converted, hub ids
    saved under ``<cache>/hub/`` once)."""

    if spec in EMBEDDED:
        return converted_dir(embedded_source(spec))
    path = Path(spec).expanduser()
    if path.exists():
        return local_model_dir(path)
    saved = cache_dir() / "hub" / re.sub(r"[^\w.-]", "_", spec)
    if not (saved / "config.json").is_file():
        model, processor = load_whisper(spec, device="cpu")
        model.save_pretrained(saved)
        processor.save_pretrained(saved)
    return saved


def _fingerprint(folder: Path, quantization: str) -> str:
    import ctranslate2  # noqa: PLC0415 (optional extra [deploy])

    h = hashlib.sha256(f"geodistill-ct2-{CT2_REVISION}-{ctranslate2.__version__}-{quantization}".encode())
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        st = path.stat()
        h.update(f"|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def ct2_folder(spec: str, quantization: str = DEFAULT_COMPUTE_TYPE) -> Path:
    """A CTranslate2 folder for ``spec``: itself if it is one, else its conversion under ``<cache>/ct2/``.

    Conversion writes into a temporary folder, records each file's size and SHA-256 in a manifest written
    last (``geodistill.models.integrity``), and renames the folder into place (a crash leaves nothing
    half-done). A reused entry is checked against its manifest; a damaged one (a file cut short, changed,
    emptied or deleted) is converted again, once, with a warning naming it. A conversion that fails is one
    ModelLoadError naming the model folder, the entry and the reason.
    """
    path = Path(spec).expanduser()
    if path.is_dir() and is_ct2_folder(path):
        return path
    require("ctranslate2", "deploy", "--engine ct2")

    hf = hf_folder(spec)
    name = re.sub(r"[^\w.-]", "_", Path(spec).name or spec)
    final = cache_dir() / "ct2" / f"{name}-{_fingerprint(hf, quantization)}"
    if final.exists():
        problem = manifest_problem(final)
        if problem is None:
            return final
        log.warning(f"{final}: damaged converted CTranslate2 model ({problem}); converting it again")
        _discard(final, problem)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        _convert(hf, tmp, quantization, final)
        try:
            os.replace(tmp, final)
        except OSError as exc:
            if manifest_problem(final) is not None:  # else a concurrent run finished first: use its copy
                raise ModelLoadError(f"{final}: cannot move the converted model into place ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def ggml_folder(spec: str, dtype: str) -> Path:
    """A folder holding a whisper.cpp file of ``spec`` (``GGML_FILE``, its tokenizer and context rule): an
    export itself, else a conversion (geodistill.models.ggml) under ``<cache>/ggml/``, made once."""
    path = Path(spec).expanduser()
    if path.is_dir() and (path / GGML_FILE).is_file():
        return path
    hf = hf_folder(spec)
    h = hashlib.sha256(f"geodistill-ggml-{GGML_REVISION}-{dtype}".encode())
    for file in sorted(hf.glob("*.json")) + sorted(hf.glob("*.safetensors")):
        st = file.stat()
        h.update(f"|{file.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    name = re.sub(r"[^\w.-]", "_", path.name or spec)
    final = cache_dir() / "ggml" / f"{name}-{dtype}-{h.hexdigest()[:12]}"
    if (final / GGML_FILE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        write_ggml_folder(hf, tmp, dtype)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / GGML_FILE).is_file():  # else a concurrent run finished first: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _convert(hf: Path, out: Path, quantization: str, final: Path) -> None:
    """CTranslate2's conversion of ``hf`` into ``out`` plus its manifest; a failure is one line."""
    try:
        convert_to_ct2(hf, out, quantization)
        write_manifest(out)
    except weights_errors() as exc:
        if isinstance(exc, OSError) and exc.errno is not None:  # a full disk, no permission: the CLI says
            raise
        raise ModelLoadError(
            f"could not convert '{hf}' to CTranslate2 (into {final}): {folder_reason(hf, exc)}"
        ) from exc


def _discard(entry: Path, problem: str) -> None:
    """Remove a damaged cache entry: renamed aside first (a concurrent run may be doing the same), then
    deleted. One line naming it when the cache is not writable."""
    aside = entry.with_name(f".{entry.name}.damaged-{os.getpid()}")
    try:
        os.replace(entry, aside)
    except FileNotFoundError:
        return  # another run took it away first
    except OSError as exc:
        raise ModelLoadError(
            f"{entry}: damaged converted CTranslate2 model ({problem}) that cannot be removed "
            f"({exc.strerror or exc}); delete it"
        ) from exc
    shutil.rmtree(aside, ignore_errors=True)


def onnx_folder(spec: str) -> Path:
    """An ONNX export of ``spec``: itself if it is one, else its export under ``<cache>/onnx/`` (made once,
    atomically, as ``ct2_folder``)."""
    path = Path(spec).expanduser()
    if path.is_dir() and is_onnx_folder(path):
        return path
    require("onnxruntime", "onnx", "--engine onnx")
    require("onnx", "onnx", "--engine onnx")
    hf = hf_folder(spec)
    name = re.sub(r"[^\w.-]", "_", Path(spec).name or spec)
    final = cache_dir() / "onnx" / f"{name}-{_fingerprint(hf, f'onnx-{ONNX_REVISION}-{torch.__version__}')}"
    if is_onnx_folder(final):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        write_onnx(hf, tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not is_onnx_folder(final):  # else a concurrent run finished first: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
