"""Word LMs for a CTC student's beam search: ``geodistill lm build`` (plain text -> ARPA) and loading one.

``build_lm(paths, order)`` reads plain-text files (Gutenberg books, the King James Bible: ``bible -f
Gen1:1-Rev22:21 | cut -d' ' -f2- > kjv.txt``), cuts them into sentences, writes each as the CTC targets
spell it (``normalise_for_ctc``: lower-case, digits spelled out, no punctuation) and counts an interpolated
Kneser-Ney model (``geodistill.decoding.ngram``). ``load_lm`` reads an ARPA file and refuses one whose words
the model cannot spell.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from geodistill.decoding.ngram import NGramLM, build_arpa, read_arpa
from geodistill.errors import GeodistillError
from geodistill.students.ctc.loss import BLANK
from geodistill.students.ctc.units import WORD, text_to_chars

MISMATCH = 0.5  # refuse an LM when more than this share of its words cannot be spelled by the model
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


def text_sentences(text: str) -> Iterator[list[str]]:
    """The sentences of plain text as word lists: paragraphs (blank-line separated) joined across their
    line breaks, cut after . ! ? ; :, each normalised as the CTC targets are."""
    for paragraph in re.split(r"\n\s*\n", text):
        for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
            words = text_to_chars(sentence)
            if words:
                yield words


def file_sentences(paths: Sequence[str | Path]) -> Iterator[list[str]]:
    """``text_sentences`` of each file in turn; one-line error naming a file that cannot be read."""
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise GeodistillError(f"{path}: cannot read it ({exc.strerror or exc})") from exc
        yield from text_sentences(text)


def build_lm(paths: Sequence[str | Path], order: int = 3) -> tuple[str, int, int]:
    """(ARPA text, sentences, words) of an ``order``-gram model of the plain-text files ``paths``."""
    sentences = list(file_sentences(paths))
    if not sentences:
        raise GeodistillError(f"lm build: no words in {', '.join(map(str, paths))}")
    return build_arpa(sentences, order), len(sentences), sum(map(len, sentences))


def spelled(vocab: Sequence[str]) -> set[str]:
    """The characters a model's units can spell (its pieces' letters; "▁" and the blank aside)."""
    return {c for i, u in enumerate(vocab) if i != BLANK and not u.startswith("<") for c in u} - {WORD, " "}


def load_lm(path: str | Path, vocab: Sequence[str]) -> NGramLM:
    """The ARPA LM at ``path``, checked against a model's units: refused in one line when most of its words
    use characters the model cannot emit (an LM of cased or foreign text, say)."""
    lm = read_arpa(path)
    letters = spelled(vocab)
    words = lm.words
    if not words:
        raise GeodistillError(f"--lm {path}: holds no words besides <s>, </s> and <unk>")
    foreign = [w for w in words if not set(w) <= letters]
    if len(foreign) > MISMATCH * len(words):
        example = sorted(foreign)[0]
        raise GeodistillError(
            f"--lm {path}: {100 * len(foreign) / len(words):.0f} % of its {len(words)} words use characters "
            f"the model cannot emit (e.g. {example!r}); build it for this model with `geodistill lm build` "
            "(lower-case, no punctuation)"
        )
    return lm
