"""The demo corpus' sentence grammar: seeded, distinct, prefix-stable, never a test transcript."""

from __future__ import annotations

from geodistill.corpus.sentences import normalise_sentence, sentences


def test_sentences_are_seeded_distinct_and_prefix_stable():
    s = sentences(300)
    assert s == sentences(300) and s[:7] == sentences(7) and s != sentences(300, seed=1)
    assert len({normalise_sentence(x) for x in s}) == 300
    assert all(5 <= len(x.split()) <= 15 and x[0].isupper() and x[-1] in ".?!" for x in s)
    assert normalise_sentence(s[0]) not in {
        normalise_sentence(x) for x in sentences(300, exclude=[s[0].upper()])
    }
