"""``geodistill demo``: the whole pipeline on the offline demo corpus (see ``geodistill.demo``)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    q = sub.add_parser("demo", help="the whole pipeline on the offline demo corpus")
    q.add_argument("--out", default="runs/demo")
    q.add_argument(
        "--config", default=None, help="a shipped preset's name or a YAML file (default: dynamic-cpu)"
    )
    q.add_argument("overrides", nargs="*")
    q.set_defaults(fn=_demo)


def _demo(a: argparse.Namespace) -> int:
    # imported in the handler: --help stays fast (the pipeline runs training in this process)
    from geodistill.demo import PRESET, run_demo  # noqa: PLC0415

    run_demo(a.out, overrides=a.overrides, preset=a.config or PRESET)
    return 0
