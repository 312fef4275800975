"""``geodistill evaluate --model M --data SPEC``: WER, CER, real-time factor and peak memory."""

from __future__ import annotations

import argparse
import json

from geodistill.cli._common import POSITIVE_INT, decode_batch_size, model_flags


def register(sub) -> None:
    q = sub.add_parser("evaluate", help="WER, CER, real-time factor and peak memory on a data spec")
    q.add_argument("--model", required=True)
    q.add_argument(
        "--data", required=True, help="data spec (folder, manifest, HF dataset, hub:DATASET[:CONFIG]:SPLIT)"
    )
    q.add_argument("--out", default=None, help="folder for eval.json, eval.md, utterances.jsonl")
    q.add_argument(
        "--limit",
        type=POSITIVE_INT,
        default=None,
        help="score the first N usable utterances (hub: reads only those)",
    )
    q.add_argument("--batch-size", type=POSITIVE_INT, default=None, help="8 (1 with --assistant)")
    q.add_argument("--strict", action="store_true", help="stop at the first bad sample")
    q.add_argument(
        "--fallback", action="store_true", help="temperature fallback, as transcribe (default off)"
    )
    q.add_argument("--no-warmup", action="store_true", help="time from the first batch (no warm-up batch)")
    q.add_argument(
        "--vad", action="store_true", help="decode only the speech (silero-vad; ct2: faster-whisper's filter)"
    )
    model_flags(q)
    q.set_defaults(fn=_evaluate)


def _evaluate(a: argparse.Namespace) -> int:
    # imported in the handler: --help stays fast (torch, transformers)
    from geodistill.evaluate.run import evaluate  # noqa: PLC0415

    result = evaluate(
        a.model,
        a.data,
        out=a.out,
        limit=a.limit,
        batch_size=decode_batch_size(a),
        device=a.device,
        language=a.language,
        task=a.task,
        beam_size=a.beam_size,
        ctc_beam=a.ctc_beam,
        lm=a.lm,
        lm_alpha=a.lm_alpha,
        lm_beta=a.lm_beta,
        strict=a.strict,
        audio_context=a.audio_context,
        context_margin=a.context_margin,
        engine=a.engine,
        dtype=a.dtype,
        compute_type=a.compute_type,
        assistant=a.assistant,
        long_form=True,
        long_form_mode=a.long_form,
        fallback=a.fallback,
        warmup=not a.no_warmup,
        vad=a.vad,
    )
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "metric",
                    "wer",
                    "wer_raw",
                    "cer",
                    "per_language",
                    "rtf",
                    "peak_memory_mb",
                    "n_utterances",
                    "n_skipped",
                    "hit_token_cap",
                    "assistant_acceptance",
                )
                if k in result and not (k == "per_language" and result[k] is None)
            },
            indent=2,
        )
    )
    return 0
