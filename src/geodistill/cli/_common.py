"""What several subcommands share: argument types, the extras check, the decoding flags. Not a subcommand."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable

from geodistill.errors import GeodistillError

# optional module -> the extra that installs it (pyproject.toml [project.optional-dependencies])
EXTRAS = {
    "optuna": "tune",
    "psycopg": "tune",
    "pandas": "tune",
    "scipy": "tune",
    "matplotlib": "report",
    "sklearn": "report",
    "umap": "report",
    "ctranslate2": "deploy",
    "faster_whisper": "deploy",
}


def number(kind: type, low: float, inclusive: bool = True) -> Callable[[str], float]:
    """An argparse ``type``: parse ``kind``, require a finite value >= low (> low when not inclusive)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        if not math.isfinite(value) or value < low or (not inclusive and value == low):
            bound = f">= {low:g}" if inclusive else f"> {low:g}"
            what = "an integer" if kind is int else "a finite number"
            raise argparse.ArgumentTypeError(f"must be {what} {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def size(text: str) -> int:
    """An argparse ``type``: a byte count, with an optional binary unit: 50G = 50 x 2^30, 500M, 2T, 4096."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = t[-1:] if t[-1:] in units else ""
    try:
        value = float(t[: len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size such as 50G, 500M or 4096, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a size > 0, got {text}")
    return int(value * units[unit])


POSITIVE_INT = number(int, 1)
NON_NEGATIVE = number(float, 0.0)


def require(module: str, command: str, extra: str | None = None) -> None:
    """Raise a one-line GeodistillError naming the extra to install (default: the module's own) when
    ``module`` is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        extra = extra or EXTRAS.get(module, "all")
        raise GeodistillError(
            f"geodistill {command} needs {module}, which is not installed: pip install 'geodistill[{extra}]'"
        ) from None


def check_durations(a: argparse.Namespace) -> None:
    if a.min_duration >= a.max_duration:
        raise GeodistillError(
            f"--min-duration {a.min_duration:g} must be below --max-duration {a.max_duration:g} "
            "(every utterance would be filtered out)"
        )


def warn_amp(cfg) -> None:
    """Say so when train.amp is set but the resolved device is not CUDA (the loop then trains fp32)."""
    # imported when called: --help stays fast (geodistill.models imports torch)
    from geodistill.models import resolve_device  # noqa: PLC0415

    device = resolve_device(cfg.train.device)
    if cfg.train.amp != "no" and device.type != "cuda":
        print(
            f"warning: train.amp={cfg.train.amp} is ignored on {device} (mixed precision is CUDA-only); "
            "training in fp32",
            file=sys.stderr,
        )


def decode_batch_size(a: argparse.Namespace) -> int:
    """--batch-size, defaulting to 8, or to 1 with --assistant (assisted generation is one at a time)."""
    if a.batch_size is None:
        return 1 if a.assistant else 8
    if a.assistant and a.batch_size != 1:
        raise GeodistillError(
            f"--assistant decodes one utterance at a time (transformers' assisted generation): "
            f"use --batch-size 1, not {a.batch_size}"
        )
    return a.batch_size


def model_flags(q: argparse.ArgumentParser) -> None:
    """The decoding flags ``transcribe`` and ``evaluate`` share."""
    q.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    q.add_argument("--language", default=None, help="e.g. en (multilingual models)")
    q.add_argument(
        "--task",
        choices=("transcribe", "translate"),
        default=None,
        help="multilingual models: transcribe (default) or translate into English; in evaluate a row's own "
        "task column wins",
    )
    q.add_argument("--beam-size", type=POSITIVE_INT, default=1)
    q.add_argument(
        "--ctc-beam", type=POSITIVE_INT, default=1, help="CTC students: prefix beam search width (1: greedy)"
    )
    q.add_argument("--lm", default=None, help="CTC students: a word n-gram LM (ARPA, `geodistill lm build`)")
    q.add_argument("--lm-alpha", type=float, default=0.5, help="the LM's weight (default 0.5)")
    q.add_argument("--lm-beta", type=float, default=1.0, help="the bonus per word (default 1.0)")
    q.add_argument(
        "--audio-context",
        choices=("full", "dynamic"),
        default=None,
        help="encoder sees 30 s (full) or the clip + a margin (dynamic); default: what the model stores",
    )
    q.add_argument(
        "--context-margin",
        type=number(int, 0),
        default=None,
        help="dynamic: encoder positions (20 ms) after the clip; default: the model's, else 64",
    )
    q.add_argument(
        "--engine",
        default="hf",
        help="hf (transformers) | ct2 (CTranslate2, int8) | whispercpp (whisper.cpp, q8_0) | "
        "onnx (ONNX Runtime, fp32, greedy); ct2/whispercpp/onnx convert a model once",
    )
    q.add_argument(
        "--dtype",
        default="auto",
        help="weights' dtype for --engine hf: auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16",
    )
    q.add_argument(
        "--compute-type",
        default=None,
        help="--engine ct2 / whispercpp: CTranslate2's compute type (default int8; int8_float32, "
        "int8_float16, int8_bfloat16, int16, float16, bfloat16, float32, default, auto)",
    )
    q.add_argument(
        "--long-form",
        choices=("sequential", "chunked"),
        default="sequential",
        help="files over 30 s: the engine's sequential long-form decoding (default), or fixed 30-s windows "
        "decoded --batch-size at a time (hf: transformers' chunked pipeline; ct2: faster-whisper's batched)",
    )
    q.add_argument(
        "--assistant",
        default=None,
        help="student run/model that drafts for the model (speculative decoding; same transcript)",
    )
