"""What the synthetic corpus says: King James Bible passages and the demo's template grammar, numbers
spelled out, drawn per split from a seeded RNG; short held-out phrases for validation. The whole build is
described in ``geodistill.corpus.synth``."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np

from geodistill.corpus.sentences import normalise_sentence, sentences
from geodistill.errors import DataError
from geodistill.optional import require

VAL_BOOKS = ("Psa", "Prv")  # Psalms, Proverbs: a sentence style the training split never hears
GRAMMAR_SHARE = 0.3  # share of utterances from the template grammar (the rest: KJV)
SHORT_MAX_WORDS = 4  # short phrase: 1 to this many words
CLAUSE_END = re.compile(r"(?<=[.,;:?!])\s+")

ONES = {"Mr.": "Mister", "Mrs.": "Missus", "Dr.": "Doctor", "St.": "Saint", "No.": "Number", "&": "and"}


def spoken(text: str) -> str:
    """Text as a speaker reads it: abbreviations, %, ordinals, years and numbers spelled out (num2words)."""
    num2words = require("num2words", "demo", "spelling out numbers").num2words
    for short, full in ONES.items():
        text = re.sub(rf"(?<!\w){re.escape(short)}(?!\w)", full, text)
    text = re.sub(r"(\d+)%", r"\1 percent", text)
    text = re.sub(r"\b(\d+)(st|nd|rd|th)\b", lambda m: num2words(int(m[1]), to="ordinal"), text)
    text = re.sub(r"\b(1[1-9]\d\d)\b", lambda m: num2words(int(m[1]), to="year"), text)
    text = re.sub(r"\d+(\.\d+)?", lambda m: num2words(float(m[0]) if m[1] else int(m[0])), text)
    return " ".join(text.split())


def kjv_verses() -> list[tuple[str, str]]:
    """(book abbreviation, verse text) of the whole King James Bible via Debian's ``bible`` (bible-kjv)."""
    if shutil.which("bible") is None:
        return []
    out = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    verses = []
    for line in out.splitlines():
        ref, _, text = line.partition(" ")
        if m := re.match(r"([1-3]?[A-Za-z]+)\d", ref):
            verses.append((m[1], text.strip()))
    return verses


def passage(words: list[str], start: int, target: int) -> str | None:
    """Words from the first sentence/clause start at or after ``start``, ended at the first sentence/clause
    end at or after ``target`` words; None when none comes within 15 more words."""
    if not words:
        raise DataError("data synth: no text to draw passages from")
    while 0 < start < len(words) - 1 and words[start - 1][-1] not in ".;:?!":
        start += 1
    for end in range(start + target, min(len(words), start + target + 15) + 1):
        if words[end - 1][-1] in ".;:?!":
            text = " ".join(words[start:end]).rstrip(",;:")
            return text[0].upper() + text[1:] + ("" if text[-1] in ".?!" else ".")
    return None


def clauses(text: str) -> list[str]:
    """``text`` cut after every clause or sentence mark (``.,;:?!``), each piece's own mark kept."""
    return [c for c in CLAUSE_END.split(text.strip()) if c]


def phrase(clause: str) -> str:
    """A clause as an utterance: capitalised, one closing sentence mark."""
    text = clause.rstrip(",;:")
    return text[0].upper() + text[1:] + ("" if text[-1] in ".?!" else ".")


class Texts:
    """Seeded text draws for a split: KJV passages of that split's books and the template grammar."""

    def __init__(self, split: str, exclude: list[str], verses: list[tuple[str, str]]):
        keep = [t for b, t in verses if (b in VAL_BOOKS) == (split == "val")]
        self.words = " ".join(keep).split()
        # The grammar is the demo's training style: validation gets none of it (a held-out style).
        grammar = sentences(4500, exclude=exclude)
        self.grammar = grammar[:4000] if split == "train" else ([] if self.words else grammar[4000:])
        self.exclude = {normalise_sentence(t) for t in exclude}
        # Short phrases (validation only): from its held-out text, never a clause the training text has.
        train_text = [t for b, t in verses if b not in VAL_BOOKS] + grammar[:4000]
        self.short = self._short_phrases(keep or self.grammar, train_text) if split == "val" else {}

    def _short_phrases(self, held: list[str], train_text: list[str]) -> dict[int, list[str]]:
        """Word count -> the clauses of ``held`` with 1-SHORT_MAX_WORDS words, spoken, in text order, without
        repeats, test transcripts (``exclude``) or any clause of ``train_text``."""
        banned = self.exclude | {normalise_sentence(c) for t in train_text for c in clauses(t)}
        out: dict[int, list[str]] = {}
        for c in (c for t in held for c in clauses(t)):
            if len(c.split()) > SHORT_MAX_WORDS or not c.rstrip(",;:"):
                continue
            said = phrase(c)
            if any(re.search(rf"(?<!\w){re.escape(a)}(?!\w)", said) for a in ONES):
                continue  # out of context an abbreviation is a guess (KJV's "No." is not "Number")
            text = spoken(said)
            key = normalise_sentence(text)
            if key and key not in banned and len(text.split()) <= SHORT_MAX_WORDS:
                banned.add(key)
                out.setdefault(len(text.split()), []).append(text)
        return out

    def draw(self, rng: np.random.Generator) -> str:
        for _ in range(20):
            if self.grammar and (not self.words or rng.random() < GRAMMAR_SHARE):
                n = int(rng.integers(1, 4))  # one to three sentences: 5-45 words
                text = " ".join(self.grammar[int(i)] for i in rng.integers(0, len(self.grammar), n))
            else:
                start = int(rng.integers(0, max(1, len(self.words) - 60)))
                target = int(np.clip(rng.gamma(2.0, 9.0), 3, 50))  # mode ~9 words, tail to 50
                text = passage(self.words, start, target)
            text = spoken(text) if text else ""
            if text and normalise_sentence(text) not in self.exclude:
                return text
        raise DataError("data synth: every drawn sentence is a test transcript (exclude list too broad)")

    def draw_short(self, rng: np.random.Generator) -> str:
        """A short held-out phrase: a word count drawn in 1-SHORT_MAX_WORDS (the nearest one held), then a
        phrase of that many words."""
        if not self.short:
            raise DataError("data synth: no short held-out phrase left (exclude list too broad?)")
        n = int(rng.integers(1, SHORT_MAX_WORDS + 1))
        n = min(self.short, key=lambda k: (abs(k - n), k))
        pool = self.short[n]
        return pool[int(rng.integers(0, len(pool)))]
