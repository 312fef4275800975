"""Periodic validation: greedy transcription of the validation split, WER on normalised text."""

from __future__ import annotations

from geodistill.data import BadSamples
from geodistill.evaluate.run import decode
from geodistill.evaluate.wer import wer_scores

# 30 s of speech is ~100 Whisper tokens; the cap stops an untrained student from looping to 448 tokens.
VAL_MAX_NEW_TOKENS = 128


def validate(run) -> dict:
    """{"wer", "wer_raw", "cer", "n_utterances"} of the run's student on its validation utterances."""
    cfg = run.cfg
    # A separate, unlogged BadSamples: the loader already reported these files once at scan time.
    decoded = decode(
        run.whisper,
        run.processor,
        run.val_utts,
        BadSamples(None),
        batch_size=cfg.train.batch_size,
        language=cfg.data.language,
        max_new_tokens=VAL_MAX_NEW_TOKENS,
    )
    refs = [u.text for u in decoded.utterances]
    scores = wer_scores(refs, decoded.hypotheses, language=cfg.data.language or "en")
    return {
        "wer": scores["wer"],
        "wer_raw": scores["wer_raw"],
        "cer": scores["cer"],
        "n_utterances": len(refs),
    }
