"""Distil OpenAI Whisper into a smaller student, and evaluate, transcribe and inspect data with it.

examples:
  geodistill transcribe tiny.en speech.wav
  geodistill data scan data/manifest.jsonl
  geodistill presets
  geodistill train --config layer-drop-cpu train.lr=1e-4
  geodistill ablate --config layer-drop-cpu --seeds 3 --test data/test.jsonl
  geodistill -q evaluate --model runs/demo --data data/test.jsonl --out runs/demo/eval

Errors are one line ("error: ...") with exit status 2; add --debug for the full traceback. -q and -v go
before or after the command: -q shows warnings and errors only (no progress bars), -v debug messages too.
"""

# Developer note: one module per subcommand (git style), each with ``register(subparsers)`` (its parser) and
# its handler; this package assembles the parser, sets up logging and turns errors into one line. Each
# handler parses flags and calls one library function; flags map 1:1 onto that function's keyword
# arguments and nothing in the library imports this package. Heavy imports happen inside each handler so
# ``geodistill --help`` stays fast.

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from typing import NoReturn

from geodistill import __version__
from geodistill.cli import (
    ablate,
    cache,
    data,
    demo,
    evaluate,
    export,
    lm,
    presets,
    report,
    train,
    transcribe,
    tune,
)
from geodistill.cli._common import EXTRAS
from geodistill.config import ConfigError
from geodistill.errors import GeodistillError
from geodistill.outdir import ENVIRONMENT_ERRNOS, reason
from geodistill.progress import LOGGER as PROGRESS_LOGGER

# the subcommands, in the order --help lists them
COMMANDS = (transcribe, evaluate, export, data, train, cache, tune, ablate, report, demo, lm, presets)


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error convention (one line naming the flag and the reason, exit 2) and
    ``-q`` / ``-v`` on every parser: the top one and each (sub)command's, which argparse builds with this
    class too, so they work before or after the command name (the last one given wins)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        group = self.add_mutually_exclusive_group()
        for flags, level, text in (
            (("-q", "--quiet"), logging.WARNING, "warnings and errors only, no progress bars"),
            (("-v", "--verbose"), logging.DEBUG, "debug messages too"),
        ):  # default SUPPRESS: a subcommand's parser would otherwise reset a level given before its name
            group.add_argument(
                *flags,
                dest="log_level",
                action="store_const",
                const=level,
                default=argparse.SUPPRESS,
                help=text,
            )

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="geodistill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return p


def _console_log(level: int) -> None:
    """Messages of the ``geodistill`` loggers at ``level`` and above on stderr (the library itself attaches
    nothing); above INFO (``-q``) no progress bars either (``geodistill.progress``)."""
    logger = logging.getLogger("geodistill")
    for h in logger.handlers:  # main() called again in one process: write to today's stderr
        if getattr(h, "geodistill_console", False):
            handler = h
            handler.stream = sys.stderr  # (not setStream: it flushes the old one, which may be closed)
            break
    else:
        handler = logging.StreamHandler()
        handler.geodistill_console = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    # the handler's level too: a training run lowers the logger to INFO for its train.log
    handler.setLevel(level)
    logger.setLevel(level)
    logging.getLogger(PROGRESS_LOGGER).setLevel(level)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _console_log(getattr(args, "log_level", logging.INFO))
    if not args.debug:  # transformers' own generate() deprecation chatter is not actionable for users
        # imported here, after parsing: --help stays fast
        from transformers.utils import logging as hf_logging  # noqa: PLC0415

        hf_logging.set_verbosity_error()
    try:
        return int(args.fn(args) or 0)
    except (GeodistillError, ConfigError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional extra's module, imported deep inside a command
        if args.debug or exc.name is None:
            traceback.print_exc()
        top = (exc.name or "?").split(".")[0]
        print(
            f"error: {top} is not installed: pip install 'geodistill[{EXTRAS.get(top, 'all')}]'",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:  # a write the disk or the file system refused (full, read-only, a file in the way)
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc.filename or '(unnamed file)'}: {reason(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
