"""``geodistill transcribe MODEL AUDIO...``: print each file's transcript, or write it as txt, json, srt, vtt
or tsv (``--output-format``, ``--output-dir``; ``geodistill.evaluate.outputs``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from geodistill.cli._common import POSITIVE_INT, decode_batch_size, model_flags
from geodistill.errors import GeodistillError


def register(sub) -> None:
    q = sub.add_parser("transcribe", help="transcribe audio files with any model spec")
    q.add_argument(
        "model", help="embedded name (tiny.en, base), HF id/dir, CTranslate2 dir, CTC student, or run folder"
    )
    q.add_argument("audio", nargs="+")
    q.add_argument(
        "--batch-size",
        type=POSITIVE_INT,
        default=None,
        help="files decoded at a time (8; 1 with --assistant); with --vad, speech chunks decoded at a time; "
        "with --long-form chunked, 30-s windows",
    )
    q.add_argument(
        "--no-fallback",
        action="store_true",
        help="plain greedy: no temperature fallback when the output looks like a loop or garbage",
    )
    q.add_argument(
        "--output-format",
        "-f",
        action="append",
        default=None,
        metavar="FMT",
        help="txt | json | srt | vtt | tsv | all; repeat or comma-separate for several. Without --output-dir "
        "one format is printed; default: the plain text",
    )
    q.add_argument(
        "--output-dir",
        "-o",
        default=None,
        metavar="DIR",
        help="write DIR/<audio name>.<format> for each file and format (default format: all)",
    )
    q.add_argument(
        "--word-timestamps",
        action="store_true",
        help="word start/end times in json (hf: models with alignment heads; ct2: faster-whisper's)",
    )
    q.add_argument(
        "--vad",
        action="store_true",
        help="decode only the speech that voice-activity detection finds (silero-vad; ct2: faster-whisper's)",
    )
    model_flags(q)
    q.set_defaults(fn=_transcribe)


def _plan(a: argparse.Namespace) -> tuple[tuple[str, ...], Path | None]:
    """(formats, output folder): what to write where, refused in one line before anything loads."""
    # imported in the handler: --help stays fast
    from geodistill.evaluate.outputs import FORMATS, parse_formats  # noqa: PLC0415

    formats = parse_formats(a.output_format)
    if a.output_dir is None:
        if len(formats) > 1:
            raise GeodistillError(
                f"--output-format {','.join(formats)}: several formats need --output-dir (one file each)"
            )
        if formats and formats[0] != "txt" and len(a.audio) > 1:
            raise GeodistillError(
                f"--output-format {formats[0]}: printing it takes one audio file; give --output-dir for "
                f"{len(a.audio)} (one file each)"
            )
        return formats, None
    return formats or FORMATS, Path(a.output_dir)


def _transcribe(a: argparse.Namespace) -> int:
    # imported in the handler: --help stays fast (torch, transformers)
    from geodistill.evaluate.outputs import NEEDS_TIMES, output_names, render  # noqa: PLC0415
    from geodistill.evaluate.transcribe import iter_timed, iter_transcripts  # noqa: PLC0415
    from geodistill.outdir import output_dir, write_file  # noqa: PLC0415

    formats, folder = _plan(a)
    options = dict(
        language=a.language,
        task=a.task,
        beam_size=a.beam_size,
        ctc_beam=a.ctc_beam,
        lm=a.lm,
        lm_alpha=a.lm_alpha,
        lm_beta=a.lm_beta,
        device=a.device,
        batch_size=decode_batch_size(a),
        engine=a.engine,
        dtype=a.dtype,
        compute_type=a.compute_type,
        assistant=a.assistant,
        long_form=True,
        long_form_mode=a.long_form,
        fallback=False if a.no_fallback else None,  # None: the model's own (Whisper's; CTC has none)
        audio_context=a.audio_context,
        context_margin=a.context_margin,
        vad=a.vad,
        word_timestamps=a.word_timestamps,
    )
    many = len(a.audio) > 1
    timed = a.vad or a.word_timestamps or any(f in NEEDS_TIMES for f in formats) or folder is not None
    if not timed:  # the plain text, decoded as it always was
        for path, text in iter_transcripts(a.model, a.audio, **options):
            print(f"{path}\t{text}" if many else text, flush=True)
        return 0
    names = output_names(a.audio, formats, folder) if folder is not None else None
    if folder is not None:
        output_dir(folder, "transcribe")
    for i, (path, found) in enumerate(iter_timed(a.model, a.audio, **options)):
        if names is None and formats and formats[0] != "txt":
            print(render(formats[0], found, str(a.model), a.engine, str(path)), end="", flush=True)
            continue
        print(f"{path}\t{found.text}" if many else found.text, flush=True)
        for fmt, target in (names[i] if names is not None else {}).items():
            text = render(fmt, found, str(a.model), a.engine, str(path))
            write_file(target, text.encode("utf-8"), f"the {fmt} transcript", "nothing else was changed")
    return 0
