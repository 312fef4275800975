import pytest

from geodistill.decoding.wer import normalise, wer_scores


def test_punctuation_and_case_only_count_in_raw_wer():
    s = wer_scores(["Hello, World!"], ["hello world"])
    assert s["wer"] == 0.0
    assert s["cer"] == 0.0
    assert s["wer_raw"] == 1.0  # both raw words differ ("Hello," vs "hello", "World!" vs "world")


def test_british_and_american_spelling_match():
    assert wer_scores(["the colour of the sky"], ["the color of the sky"])["wer"] == 0.0
    assert wer_scores(["the colour of the sky"], ["the color of the sky"])["wer_raw"] == pytest.approx(0.2)


def test_counts_of_each_error_kind():
    s = wer_scores(["a b c d", "e f"], ["a x c", "e f g h"])
    u0, u1 = s["per_utterance"]
    assert (u0["substitutions"], u0["deletions"], u0["insertions"], u0["hits"]) == (1, 1, 0, 2)
    assert (u1["substitutions"], u1["deletions"], u1["insertions"], u1["hits"]) == (0, 0, 2, 2)
    assert u0["wer"] == pytest.approx(2 / 4) and u1["wer"] == pytest.approx(2 / 2)
    # corpus WER pools errors: (2 + 2) / (4 + 2), not the mean of 0.5 and 1.0
    assert s["wer"] == pytest.approx(4 / 6)
    assert s["n_ref_words"] == 6


def test_cer_counts_characters_of_normalised_text():
    s = wer_scores(["cat"], ["Cap."])
    assert s["cer"] == pytest.approx(1 / 3)
    assert s["wer"] == 1.0


def test_whisper_english_normalisation_of_numbers_and_contractions():
    assert normalise("Mr. Smith won't pay twenty dollars") == "mister smith will not pay $20"
    s = wer_scores(["Mr. Smith won't pay twenty dollars"], ["Mister Smith will not pay $20."])
    assert s["wer"] == 0.0


def test_other_languages_use_the_basic_normaliser():
    # the English normaliser would rewrite "colour"; the basic one only lower-cases and drops punctuation
    assert normalise("Colour, Été!", language="fr") == "colour été"
    assert wer_scores(["Colour"], ["color"], language="fr")["wer"] == 1.0


def test_empty_reference_after_normalisation_does_not_crash():
    s = wer_scores(["hmm", "(laughs)", "good day"], ["", "oh yes", "good day"])
    u = s["per_utterance"]
    zero = {"substitutions": 0, "deletions": 0, "insertions": 0, "hits": 0, "ref_words": 0, "wer": 0.0}
    assert u[0] == zero
    assert u[1]["insertions"] == 2 and u[1]["wer"] == 2.0  # errors / max(ref words, 1)
    assert s["wer"] == pytest.approx(2 / 2)
    assert wer_scores(["hmm"], ["hmm"])["wer"] == 0.0


def test_mismatched_lengths_and_empty_lists():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        wer_scores(["a", "b"], ["a"])
    assert wer_scores([], [])["wer"] == 0.0
