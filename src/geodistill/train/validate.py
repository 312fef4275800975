"""Periodic validation: greedy transcription of the validation split, WER on normalised text."""

from __future__ import annotations

from geodistill.data import BadSamples
from geodistill.decoding.options import DecodeOptions
from geodistill.decoding.wer import wer_scores
from geodistill.students import FAMILIES

# 30 s of speech is ~100 Whisper tokens; the cap stops an untrained student from looping to 448 tokens.
VAL_MAX_NEW_TOKENS = 128


def generation_cap(tokenizer, texts: list[str]) -> int:
    """New-token budget for validation: twice the longest reference (+8), at most VAL_MAX_NEW_TOKENS.

    A half-trained student that babbles costs at most this many decoder steps per batch.
    """
    longest = max((len(tokenizer(" " + t, add_special_tokens=False).input_ids) for t in texts), default=0)
    return min(VAL_MAX_NEW_TOKENS, 2 * longest + 8)


def validate(run) -> dict:
    """{"wer", "wer_raw", "cer", "n_utterances"} of the run's student on its validation utterances."""
    cfg = run.cfg
    family, student, texts = FAMILIES[run.student.family], run.student, [u.text for u in run.val_utts]
    cap = generation_cap(student.processor.tokenizer, texts) if family.token_cap else None
    options = DecodeOptions(language=cfg.data.language, batch_size=cfg.train.batch_size, max_new_tokens=cap)
    # Decoded as `geodistill evaluate` decodes, with a separate, unlogged BadSamples: the loader already
    # reported these files once at scan time.
    decoded, _, _ = family.decode(
        student.decoding_model, student.processor, run.val_utts, BadSamples(None), options
    )
    return _scores([u.text for u in decoded.utterances], decoded.hypotheses, cfg.data.language)


def _scores(refs: list[str], hyps: list[str], language: str | None) -> dict:
    scores = wer_scores(refs, hyps, language=language or "en")
    return {
        "wer": scores["wer"],
        "wer_raw": scores["wer_raw"],
        "cer": scores["cer"],
        "n_utterances": len(refs),
    }
