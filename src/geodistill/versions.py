"""Package versions recorded next to every result (run config, eval.json, teacher-cache index)."""

from __future__ import annotations

import platform
from importlib import metadata

RECORDED = (
    "geodistill",
    "torch",
    "transformers",
    "peft",
    "safetensors",
    "numpy",
    "jiwer",
    "soundfile",
    "soxr",
)


def package_versions() -> dict[str, str]:
    """{"python": "3.11.7", "torch": "2.13.0+cpu", ...}; a missing package reads "not installed"."""
    found = {"python": platform.python_version()}
    for name in RECORDED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
