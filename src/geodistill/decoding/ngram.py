"""Word n-gram language models in the ARPA format: built from text (interpolated Kneser-Ney), read, scored.

``build_arpa(sentences, order)`` counts the n-grams of word lists and writes an ARPA text whose
probabilities are interpolated Kneser-Ney's (Chen & Goodman 1998): for an n-gram ``h w`` of order n,

    p(w | h) = max(a(h w) - D_n, 0) / A(h) + bow(h) * p(w | h[1:]),   bow(h) = D_n * T(h) / A(h)

where a() is the raw count at the highest order and at n-grams that start with <s>, else the number of
distinct words seen before it (its continuation count); A(h) sums a(h .) and T(h) counts its distinct
followers; D_n = n1 / (n1 + 2 n2) from the counts-of-counts of order n. Unigrams interpolate with the uniform
distribution over the vocabulary (<unk> included, which so gets that share only). Written as ARPA (log10
probability, n-gram, log10 backoff weight), the backed-off score of an unseen ``h w``, bow(h) * p(w | h[1:]),
is exactly the interpolated probability, so any ARPA reader (KenLM included) scores it the same.

``read_arpa(path)`` reads any ARPA file (ours or KenLM's ``lmplz`` output) into an ``NGramLM`` whose
``logp(context, word)`` backs off in the usual way. A file that is not ARPA is refused in one line naming
the file and the line.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from geodistill.errors import GeodistillError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
NO_PROB = -99.0  # ARPA's log10 probability of <s>, which is never predicted
FLOOR = -10.0  # log10 probability of a word outside a model that has no <unk>


class LMFileError(GeodistillError):
    """An LM file that is missing, not ARPA, or damaged: one line naming the file."""


Gram = tuple[str, ...]


def _discount(counts: Iterable[int]) -> float:
    """D = n1 / (n1 + 2 n2) from the counts-of-counts; 0.5 when there are too few to estimate it."""
    n1 = n2 = 0
    for c in counts:
        n1 += c == 1
        n2 += c == 2
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def _adjusted_counts(sentences: Iterable[Sequence[str]], order: int) -> list[dict[Gram, int]]:
    """a() per order (index n - 1): raw counts at ``order`` and for n-grams starting with <s>,
    continuation counts (distinct left neighbours) below."""
    raw: list[dict[Gram, int]] = [defaultdict(int) for _ in range(order)]
    for words in sentences:
        padded = (BOS, *words, EOS)
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                raw[n - 1][padded[i : i + n]] += 1
    adjusted: list[dict[Gram, int]] = [defaultdict(int) for _ in range(order)]
    adjusted[order - 1] = raw[order - 1]
    for n in range(order - 1, 0, -1):
        for gram in raw[n]:  # each distinct (n+1)-gram adds one left neighbour to its last n words
            adjusted[n - 1][gram[1:]] += 1
        for gram, c in raw[n - 1].items():
            if gram[0] == BOS:
                adjusted[n - 1][gram] = c
    adjusted[0].pop((BOS,), None)  # <s> is never predicted: no unigram count
    return adjusted


def kneser_ney(sentences: Iterable[Sequence[str]], order: int = 3) -> list[dict[Gram, tuple[float, float]]]:
    """Interpolated Kneser-Ney over word lists: per order, {n-gram: (probability, backoff weight)} (not
    logs; backoff 1.0 when the n-gram is never a context)."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    a = _adjusted_counts(sentences, order)
    if not a[0]:
        raise GeodistillError("lm build: no words in the text")
    vocab = {g[0] for g in a[0]} | {UNK, EOS}
    vocab.discard(BOS)
    # each order's context totals A(h) and follower counts T(h)
    totals: list[dict[Gram, int]] = [defaultdict(int) for _ in range(order)]
    types: list[dict[Gram, int]] = [defaultdict(int) for _ in range(order)]
    for n in range(order):
        for gram, c in a[n].items():
            totals[n][gram[:-1]] += c
            types[n][gram[:-1]] += 1
    tables: list[dict[Gram, tuple[float, float]]] = [{} for _ in range(order)]
    d1 = _discount(a[0].values())
    total1, types1 = totals[0][()], types[0][()]
    for w in vocab:
        p = max(a[0].get((w,), 0) - d1, 0) / total1 + d1 * types1 / total1 / len(vocab)
        tables[0][(w,)] = (p, 1.0)
    tables[0][(BOS,)] = (0.0, 1.0)
    for n in range(2, order + 1):
        d = _discount(a[n - 1].values())
        lower = tables[n - 2]
        for gram, c in a[n - 1].items():
            h = gram[:-1]
            bow = d * types[n - 1][h] / totals[n - 1][h]
            tables[n - 1][gram] = (max(c - d, 0) / totals[n - 1][h] + bow * lower[gram[1:]][0], 1.0)
    for n in range(1, order):  # a context's backoff weight sits on its own entry one order down
        d = _discount(a[n].values())
        for h in totals[n]:
            p, _ = tables[n - 1][h]
            tables[n - 1][h] = (p, d * types[n][h] / totals[n][h])
    return tables


def _log10(p: float) -> float:
    return math.log10(p) if p > 0 else NO_PROB


def arpa_text(tables: Sequence[dict[Gram, tuple[float, float]]]) -> str:
    """The ARPA text of ``kneser_ney``'s tables: \\data\\ counts, then each order's n-grams sorted."""
    order = len(tables)
    lines = ["", "\\data\\", *(f"ngram {n + 1}={len(t)}" for n, t in enumerate(tables)), ""]
    for n, table in enumerate(tables, start=1):
        lines.append(f"\\{n}-grams:")
        for gram in sorted(table):
            p, bow = table[gram]
            prob = NO_PROB if gram == (BOS,) else _log10(p)
            tail = f"\t{math.log10(bow):.6f}" if n < order and bow != 1.0 else ""
            lines.append(f"{prob:.6f}\t{' '.join(gram)}{tail}")
        lines.append("")
    lines.append("\\end\\")
    return "\n".join(lines) + "\n"


def build_arpa(sentences: Iterable[Sequence[str]], order: int = 3) -> str:
    """The ARPA text of an interpolated Kneser-Ney ``order``-gram model of ``sentences`` (word lists)."""
    return arpa_text(kneser_ney(sentences, order))


@dataclass
class NGramLM:
    """An ARPA model: per order, {n-gram: (log10 probability, log10 backoff weight)}."""

    tables: list[dict[Gram, tuple[float, float]]] = field(default_factory=list)
    path: str = "the LM"

    @property
    def order(self) -> int:
        return len(self.tables)

    @property
    def words(self) -> set[str]:
        """Its vocabulary: the unigrams, less <s>, </s> and <unk>."""
        return {g[0] for g in self.tables[0]} - {BOS, EOS, UNK}

    def logp(self, context: Sequence[str], word: str) -> float:
        """log10 p(word | context), backing off (the last ``order - 1`` words of context count); a word
        outside the vocabulary scores as <unk> (``FLOOR`` without one)."""
        if (word,) not in self.tables[0]:
            word = UNK
            if (UNK,) not in self.tables[0]:
                return FLOOR
        h = tuple(context[len(context) - self.order + 1 :]) if self.order > 1 else ()
        backoff = 0.0
        while True:
            entry = self.tables[len(h)].get((*h, word))
            if entry is not None:
                return backoff + entry[0]
            hist = self.tables[len(h) - 1].get(h)
            backoff += hist[1] if hist is not None else 0.0
            h = h[1:]


def read_arpa(path: str | Path) -> NGramLM:
    """The ARPA file at ``path``; LMFileError (one line: the file, the line, what is wrong) otherwise."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LMFileError(f"--lm {p}: cannot read it as ARPA text ({type(exc).__name__}: {exc})") from exc
    counts: dict[int, int] = {}
    i = 0
    while i < len(lines) and lines[i].strip() != "\\data\\":
        i += 1
    if i == len(lines):
        raise LMFileError(
            f"--lm {p}: not an ARPA file (no \\data\\ header; build one with `geodistill lm build`)"
        )
    i += 1
    while i < len(lines) and lines[i].strip().startswith("ngram "):
        n, _, c = lines[i].strip()[6:].partition("=")
        if not (n.strip().isdigit() and c.strip().isdigit()):
            raise LMFileError(f"--lm {p}:{i + 1}: bad count line {lines[i].strip()!r}")
        counts[int(n)] = int(c)
        i += 1
    if not counts or sorted(counts) != list(range(1, len(counts) + 1)):
        raise LMFileError(f"--lm {p}: the \\data\\ section lists no n-gram orders 1..N")
    tables = _read_sections(p, lines, i, counts)
    return NGramLM(tables, str(p))


def _read_sections(p: Path, lines: list[str], i: int, counts: dict[int, int]) -> list[dict]:
    tables: list[dict[Gram, tuple[float, float]]] = [{} for _ in counts]
    n = 0
    for k in range(i, len(lines)):
        line = lines[k].strip()
        if not line:
            continue
        if line == "\\end\\":
            break
        if line.startswith("\\") and line.endswith("-grams:"):
            n = int(line[1:].split("-")[0]) if line[1:].split("-")[0].isdigit() else -1
            if n not in counts:
                raise LMFileError(f"--lm {p}:{k + 1}: section {line!r} is not among the \\data\\ orders")
            continue
        parts = line.split()
        if n == 0 or len(parts) not in (n + 1, n + 2):
            raise LMFileError(
                f"--lm {p}:{k + 1}: expected 'log10-prob {n} words [backoff]', got {line[:60]!r}"
            )
        try:
            prob = float(parts[0])
            bow = float(parts[n + 1]) if len(parts) == n + 2 else 0.0
        except ValueError:
            raise LMFileError(f"--lm {p}:{k + 1}: not a number in {line[:60]!r}") from None
        tables[n - 1][tuple(parts[1 : n + 1])] = (prob, bow)
    else:
        raise LMFileError(f"--lm {p}: ends without \\end\\ (truncated?)")
    for order, table in enumerate(tables, start=1):
        if len(table) != counts[order]:
            raise LMFileError(
                f"--lm {p}: \\data\\ says {counts[order]} {order}-grams, the file holds {len(table)} "
                "(damaged?)"
            )
    return tables
