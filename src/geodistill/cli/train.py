"""``geodistill train --config FILE [key=value ...]``: distil a teacher into a student."""

from __future__ import annotations

import argparse

from geodistill.cli._common import warn_amp
from geodistill.config import load_config


def register(sub) -> None:
    q = sub.add_parser("train", help="distil a teacher into a student (resumes from RUN_DIR/checkpoint.pt)")
    q.add_argument("--config", required=True)
    q.add_argument("overrides", nargs="*", help="dotted key=value, e.g. train.lr=1e-4")
    q.set_defaults(fn=_train)


def _train(a: argparse.Namespace) -> int:
    # imported in the handler: --help stays fast (torch, transformers)
    from geodistill.train.loop import train  # noqa: PLC0415

    cfg = load_config(a.config, a.overrides)
    warn_amp(cfg)
    result = train(cfg)
    return result.exit_code
