"""``geodistill presets [NAME]``: the shipped training presets, each with its one-line description."""

from __future__ import annotations

import argparse

from geodistill.config import description, preset_file, preset_names


def register(sub) -> None:
    q = sub.add_parser(
        "presets", help="list the shipped training presets (--config NAME), or print one of them"
    )
    q.add_argument("name", nargs="?", default=None, help="print this preset's YAML (to copy and edit)")
    q.set_defaults(fn=_presets)


def _presets(a: argparse.Namespace) -> int:
    if a.name is not None:
        print(preset_file(a.name).read_text(encoding="utf-8"), end="")
        return 0
    names = preset_names()
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {description(name)}")
    return 0
