"""Word and character error rates on raw and Whisper-normalised text.

Corpus WER is total word errors over total reference words (jiwer over the whole list), not the mean
of per-utterance rates. Normalised scores use Whisper's own text normaliser, so "Hello, World!" and
"hello world" match and British/American spellings ("colour"/"color") count as the same word.

Empty references (after normalisation, e.g. a reference that was only "(laughs)" or "hmm") are kept:
their errors are all insertions. An utterance's rate is errors / max(reference words, 1), so an empty
reference with an empty hypothesis scores 0 and one with k hypothesis words scores k. A corpus whose
references are all empty gets wer = total insertions, jiwer's convention.

Languages: each utterance is normalised by its own language's normaliser (``language`` may be one per
utterance); ``language_scores`` scores each language of a mixed set alone. Languages written without
spaces (zh, ja, th, ...: ``NO_SPACE_LANGUAGES``) are headlined by their CER, a "word" there being a phrase.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from importlib.resources import files

import jiwer
from transformers.models.whisper.english_normalizer import BasicTextNormalizer, EnglishTextNormalizer

from geodistill.data.tokens import NO_SPACE_LANGUAGES, language_code


@functools.cache
def _english_normaliser() -> Callable[[str], str]:

    # transformers ships the normaliser but not its British->American map; whisper-normalizer ships the map
    mapping = json.loads(files("whisper_normalizer").joinpath("normalizers/english.json").read_text("utf-8"))
    return EnglishTextNormalizer(mapping)


@functools.cache
def _basic_normaliser() -> Callable[[str], str]:

    return BasicTextNormalizer()


def normaliser(language: str | None = "en") -> Callable[[str], str]:
    """Whisper's English normaliser for English (or None), its basic normaliser for any other language."""
    english = language is None or language.lower() in ("en", "english")
    return _english_normaliser() if english else _basic_normaliser()


def normalise(text: str, language: str | None = "en") -> str:
    """Normalised text with single spaces and no leading/trailing whitespace."""
    return " ".join(normaliser(language)(text).split())


def _errors_per_utterance(out: jiwer.WordOutput) -> list[dict[str, int]]:
    """Substitutions, deletions, insertions and hits of each reference/hypothesis pair of one jiwer run."""
    rows = []
    for chunks in out.alignments:
        row = {"substitutions": 0, "deletions": 0, "insertions": 0, "hits": 0}
        for c in chunks:
            ref_len, hyp_len = c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx
            if c.type == "equal":
                row["hits"] += ref_len
            elif c.type == "substitute":
                row["substitutions"] += ref_len
            elif c.type == "delete":
                row["deletions"] += ref_len
            elif c.type == "insert":
                row["insertions"] += hyp_len
        rows.append(row)
    return rows


def _rate(errors: int, n_ref: int) -> float:
    return errors / max(n_ref, 1)


def _corpus_rate(out: jiwer.WordOutput | jiwer.CharacterOutput) -> float:
    """Pooled errors over pooled reference units (words or characters) of a jiwer run over a list."""
    return _rate(
        out.substitutions + out.deletions + out.insertions, out.hits + out.substitutions + out.deletions
    )


def headline(language: str | None) -> str:
    """ "cer" for a language written without spaces between words, else "wer"."""
    return "cer" if language is not None and language_code(language) in NO_SPACE_LANGUAGES else "wer"


def language_scores(refs: Sequence[str], hyps: Sequence[str], languages: Sequence[str | None]) -> dict:
    """{language: its own ``wer_scores`` (per_utterance left out) + n_utterances, "metric" ("wer" or "cer",
    ``headline``) and "error_rate" (that metric's value)}, languages in first-seen order; None -> "unknown"
    (scored with the English normaliser, as ``wer_scores`` does with no language)."""
    groups: dict[str | None, list[int]] = {}
    for i, lang in enumerate(languages):
        groups.setdefault(lang, []).append(i)
    out = {}
    for lang, rows in groups.items():
        scores = wer_scores([refs[i] for i in rows], [hyps[i] for i in rows], lang)
        scores.pop("per_utterance")
        metric = headline(lang)
        out[lang or "unknown"] = {
            **scores,
            "n_utterances": len(rows),
            "metric": metric,
            "error_rate": scores[metric],
        }
    return out


def wer_scores(
    refs: Sequence[str], hyps: Sequence[str], language: str | None | Sequence[str | None] = "en"
) -> dict:
    """Score hypotheses against references; ``language``: one for all, or one per utterance.

    Returns {"wer": normalised corpus WER, "wer_raw": corpus WER on the text as given (case and
    punctuation count), "cer": normalised corpus CER, "n_ref_words": normalised reference words,
    "per_utterance": [{"substitutions", "deletions", "insertions", "hits", "ref_words", "wer"}]} where
    the per-utterance counts are on normalised text. An empty input list scores 0 everywhere.
    """
    if len(refs) != len(hyps):
        raise ValueError(f"wer_scores: {len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        return {"wer": 0.0, "wer_raw": 0.0, "cer": 0.0, "n_ref_words": 0, "per_utterance": []}
    langs = [language] * len(refs) if language is None or isinstance(language, str) else list(language)
    if len(langs) != len(refs):
        raise ValueError(f"wer_scores: {len(refs)} references but {len(langs)} languages")
    norm_refs = [normalise(r, lang) for r, lang in zip(refs, langs, strict=True)]
    norm_hyps = [normalise(h, lang) for h, lang in zip(hyps, langs, strict=True)]
    words = jiwer.process_words(norm_refs, norm_hyps)
    raw = jiwer.process_words([" ".join(r.split()) for r in refs], [" ".join(h.split()) for h in hyps])
    chars = jiwer.process_characters(norm_refs, norm_hyps)
    per_utt = []
    for row, ref in zip(_errors_per_utterance(words), norm_refs, strict=True):
        n_ref = len(ref.split())
        errors = row["substitutions"] + row["deletions"] + row["insertions"]
        per_utt.append({**row, "ref_words": n_ref, "wer": _rate(errors, n_ref)})
    return {
        "wer": _corpus_rate(words),
        "wer_raw": _corpus_rate(raw),
        "cer": _corpus_rate(chars),
        "n_ref_words": words.hits + words.substitutions + words.deletions,
        "per_utterance": per_utt,
    }
