"""``geodistill lm build TEXT... --order 3 --out lm.arpa``: a word n-gram LM for CTC beam search."""

from __future__ import annotations

import argparse

from geodistill.cli._common import POSITIVE_INT


def register(sub) -> None:
    lm = sub.add_parser("lm", help="word n-gram language models for CTC beam search").add_subparsers(
        dest="lm_command", required=True
    )
    q = lm.add_parser(
        "build",
        help="count an interpolated Kneser-Ney n-gram LM of plain-text files into an ARPA file (offline)",
    )
    q.add_argument("text", nargs="+", help="plain-text files (UTF-8), e.g. Gutenberg books or the KJV")
    q.add_argument("--order", type=POSITIVE_INT, default=3, help="n-gram order (default 3)")
    q.add_argument("--out", required=True, help="the ARPA file to write")
    q.set_defaults(fn=_build)


def _build(a: argparse.Namespace) -> int:
    # imported in the handler: --help stays fast
    from geodistill.outdir import write_file  # noqa: PLC0415
    from geodistill.students.ctc.lm import build_lm  # noqa: PLC0415

    arpa, n_sentences, n_words = build_lm(a.text, a.order)
    write_file(a.out, arpa.encode("utf-8"), "the LM", "nothing was written")
    print(f"{a.out}: {a.order}-gram LM of {n_sentences:,} sentences, {n_words:,} words")
    return 0
