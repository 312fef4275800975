"""Pseudo-labels: the teacher's transcripts written as a training manifest (JSONL, one utterance a line).

Training a student on its teacher's transcripts (instead of, or besides, human ones) is how distil-whisper
labels its data; filtering out the utterances where the teacher disagrees most with the ground truth
(normalised WER above a threshold) drops the teacher's hallucinations before the student copies them.

This module sits on top of the data layer and uses the evaluate package to transcribe; nothing in
``geodistill.data`` imports it.
"""

from __future__ import annotations

import json
from pathlib import Path

from geodistill.data import BadSamples, Utterance
from geodistill.data.audio import HF_PREFIX


def _audio_path(utt: Utterance) -> str:
    # hf://<dir>#<row> references name audio inside a saved dataset, not a file; they are kept verbatim
    return utt.audio if utt.audio.startswith(HF_PREFIX) else str(Path(utt.audio).resolve())


def _row(utt: Utterance, text: str, duration: float, language: str | None) -> dict:
    return {
        "id": utt.id,
        "audio_filepath": _audio_path(utt),
        "text": text,
        "duration": utt.duration if utt.duration is not None else duration,
        "offset": utt.offset,
        "speaker": utt.speaker,
        "language": utt.language or language,
    }


def pseudo_label(
    teacher,
    data,
    out: str | Path,
    wer_threshold: float | None = None,
    batch_size: int = 8,
    device: str = "auto",
    language: str | None = None,
    max_new_tokens: int | None = None,
) -> dict:
    """Transcribe ``data`` with ``teacher`` and write the manifest ``out`` (JSONL).

    ``teacher`` is a model spec or a loaded (model, processor); ``data`` a data spec or a list of Utterance.
    Each line holds audio_filepath (absolute), text (the teacher's transcript), duration, offset, speaker,
    language and, where the utterance has a ground-truth text, ``reference`` and ``teacher_wer`` (normalised,
    this utterance alone). Such utterances are dropped when teacher_wer > ``wer_threshold``; utterances
    without ground truth are kept. Empty teacher transcripts are dropped too (nothing to learn; ``load_spec``
    would refuse them as training items). Unreadable audio is skipped and listed in ``<out>.bad.jsonl``.
    Returns {"n_in", "n_written", "n_dropped", "n_skipped", "wer"} where wer is the teacher's corpus WER on
    the utterances that have ground truth (None when none has).
    """
    from geodistill.evaluate.run import decode, load_model, load_utterances
    from geodistill.evaluate.wer import wer_scores

    if wer_threshold is not None and wer_threshold < 0:
        raise ValueError(f"wer_threshold must be >= 0, got {wer_threshold}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bad = BadSamples(out.with_suffix(".bad.jsonl"))
    model, processor, _ = load_model(teacher, device)
    utts = load_utterances(data, bad, require_text=False)
    n_in = len(utts) + bad.count  # items the spec named, including those it could not use
    decoded = decode(model, processor, utts, bad, batch_size, language, 1, max_new_tokens)
    triples = list(zip(decoded.utterances, decoded.hypotheses, decoded.audio_seconds, strict=True))
    rows = [_row(u, hyp, secs, language) for u, hyp, secs in triples]
    labelled = [i for i, u in enumerate(decoded.utterances) if u.text and u.text.strip()]
    refs, hyps = [triples[i][0].text for i in labelled], [triples[i][1] for i in labelled]
    scores = wer_scores(refs, hyps, language or "en")
    for i, ref, per_utt in zip(labelled, refs, scores["per_utterance"], strict=True):
        rows[i].update(reference=ref, teacher_wer=per_utt["wer"])
    kept = [
        r for r in rows if r["text"] and (wer_threshold is None or r.get("teacher_wer", 0.0) <= wer_threshold)
    ]
    with open(out, "w") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    return {
        "n_in": n_in,
        "n_written": len(kept),
        "n_dropped": len(rows) - len(kept),
        "n_skipped": bad.count,
        "wer": scores["wer"] if labelled else None,
    }
