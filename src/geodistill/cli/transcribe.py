"""``geodistill transcribe MODEL AUDIO...``: print each file's transcript."""

from __future__ import annotations

import argparse

from geodistill.cli._common import POSITIVE_INT, decode_batch_size, model_flags


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
        help="files decoded at a time (8; 1 with --assistant)",
    )
    q.add_argument(
        "--no-fallback",
        action="store_true",
        help="plain greedy: no temperature fallback when the output looks like a loop or garbage",
    )
    model_flags(q)
    q.set_defaults(fn=_transcribe)


def _transcribe(a: argparse.Namespace) -> int:
    # imported in the handler: --help stays fast (torch, transformers)
    from geodistill.evaluate.transcribe import iter_transcripts  # noqa: PLC0415

    many = len(a.audio) > 1
    for path, text in iter_transcripts(
        a.model,
        a.audio,
        language=a.language,
        beam_size=a.beam_size,
        device=a.device,
        batch_size=decode_batch_size(a),
        engine=a.engine,
        dtype=a.dtype,
        compute_type=a.compute_type,
        assistant=a.assistant,
        long_form=True,
        fallback=False if a.no_fallback else None,  # None: the model's own (Whisper's; CTC has none)
        audio_context=a.audio_context,
        context_margin=a.context_margin,
    ):
        print(f"{path}\t{text}" if many else text, flush=True)
    return 0
