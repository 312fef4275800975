"""``geodistill report RUN_DIR``: plots, latent-space maps and the teacher/student table of a run."""

from __future__ import annotations

import argparse

from geodistill.cli._common import POSITIVE_INT, require


def register(sub) -> None:
    q = sub.add_parser("report", help="plots, latent-space maps and the teacher/student table of a run")
    q.add_argument("run_dir")
    q.add_argument("--data", default=None)
    q.add_argument("--n", type=POSITIVE_INT, default=32)
    q.set_defaults(fn=_report)


def _report(a: argparse.Namespace) -> int:
    require("matplotlib", "report")
    # imported in the handler, after the extras check: --help stays fast (matplotlib, torch)
    from geodistill.report import build_report  # noqa: PLC0415

    print(build_report(a.run_dir, data=a.data, n=a.n))
    return 0
