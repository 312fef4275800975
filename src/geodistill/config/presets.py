"""The presets geodistill ships: ``geodistill/presets/NAME.yaml``, package data found by name.

``--config dynamic-cpu`` (or ``load_config("dynamic-cpu")``) reads the shipped ``dynamic-cpu.yaml``; a path to
an existing file always wins over a preset of the same name. Each preset's first line is a YAML comment
holding its one-line description (``geodistill presets`` lists them).
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from geodistill.config.errors import ConfigError

SUFFIX = ".yaml"


def _folder() -> Traversable:
    # package data beside the code, wherever geodistill is installed (a wheel, an editable checkout)
    return files("geodistill") / "presets"


def preset_names() -> list[str]:
    """The shipped presets' names, sorted (the file names without ``.yaml``)."""
    return sorted(
        f.name.removesuffix(SUFFIX) for f in _folder().iterdir() if f.is_file() and f.name.endswith(SUFFIX)
    )


def preset_file(name: str) -> Traversable:
    """The shipped preset ``name`` (``.yaml`` optional); ConfigError naming the known ones when none is."""
    stem = name.removesuffix(SUFFIX)
    if stem not in preset_names():
        raise ConfigError(f"{name}: no such preset (shipped: {', '.join(preset_names())})")
    return _folder() / f"{stem}{SUFFIX}"


def description(name: str) -> str:
    """A preset's one-line description: its first line, a YAML comment."""
    first = preset_file(name).read_text(encoding="utf-8").partition("\n")[0]
    return first.removeprefix("#").strip() if first.startswith("#") else ""


def config_source(spec: str | Path) -> Path | Traversable:
    """The file behind ``--config``: ``spec`` itself when it is a file, else the shipped preset it names.

    ConfigError when neither: a bare name (``dynamic-cpu``, ``dynamic-cpu.yaml``) names the shipped
    presets, anything else (a folder part, another suffix) is a missing file.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    if str(spec) != path.name or path.suffix not in ("", SUFFIX):
        raise ConfigError(f"{spec}: config file not found")
    if path.stem not in preset_names():
        raise ConfigError(
            f"{spec}: no such config file or preset (presets: {', '.join(preset_names())}; "
            "geodistill presets lists them)"
        )
    return _folder() / f"{path.stem}{SUFFIX}"
