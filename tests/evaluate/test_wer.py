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


def test_per_language_wer_is_computed_right():
    from geodistill.decoding.wer import headline, language_scores

    refs = ["the cat sat", "a dog", "der Hund bellt laut", "我喜欢猫"]
    hyps = ["the cat sat", "a frog", "der Hund bellte laut", "我喜欢狗"]
    langs = ["en", "en", "de", "zh"]
    per = language_scores(refs, hyps, langs)
    assert list(per) == ["en", "de", "zh"]
    en, de, zh = per["en"], per["de"], per["zh"]
    # en: 1 substitution in 5 words; de: 1 in 4; zh: one "word" (no spaces), 1 of 4 characters wrong
    assert (en["wer"], en["n_ref_words"], en["n_utterances"]) == (pytest.approx(1 / 5), 5, 2)
    assert de["wer"] == pytest.approx(1 / 4) and de["metric"] == "wer" and de["error_rate"] == de["wer"]
    assert zh["wer"] == 1.0 and zh["cer"] == pytest.approx(1 / 4)
    assert zh["metric"] == "cer" and zh["error_rate"] == zh["cer"]  # CER is the headline without spaces
    assert [headline(x) for x in ("ja", "th", "yue", "Chinese", "en", None)] == ["cer"] * 4 + ["wer"] * 2
    pooled = wer_scores(refs, hyps, language=langs)  # each utterance normalised in its own language
    assert pooled["n_ref_words"] == 5 + 4 + 1 and pooled["wer"] == pytest.approx(3 / 10)
    assert language_scores(["x"], ["x"], [None]) == {
        "unknown": {
            "wer": 0.0,
            "wer_raw": 0.0,
            "cer": 0.0,
            "n_ref_words": 1,
            "n_utterances": 1,
            "metric": "wer",
            "error_rate": 0.0,
        }
    }


def test_a_mixed_set_is_decoded_language_by_language_and_merged_in_input_order():
    from geodistill.data import BadSamples, Utterance
    from geodistill.decoding.batches import Decoded
    from geodistill.decoding.options import DecodeOptions
    from geodistill.evaluate.run import decode_by_language, eval_markdown

    class Family:
        calls: list = []

        def check(self, opts):  # a family refuses options it cannot honour; this one takes any
            return opts

        def decode(self, model, processor, utts, bad, opts):
            self.calls.append((opts.language, [u.id for u in utts]))
            out = Decoded(utterances=list(utts), hypotheses=[f"{opts.language}:{u.id}" for u in utts])
            out.audio_seconds, out.no_speech, out.n_tokens = [1.0] * len(utts), [None] * len(utts), len(utts)
            return out, {"beam_size": 1}, "timing"

    utts = [
        Utterance("a", "x", "t", language="de"),
        Utterance("b", "x", "t"),
        Utterance("c", "x", "t", language="de"),
    ]
    family = Family()
    decoded, fields, _ = decode_by_language(family, None, None, utts, BadSamples(), DecodeOptions())
    assert family.calls == [("de", ["a", "c"]), (None, ["b"])]  # its own prompt per language; the rest detect
    assert decoded.hypotheses == ["de:a", "None:b", "de:c"] and decoded.n_tokens == 3
    family.calls.clear()
    decode_by_language(family, None, None, utts, BadSamples(), DecodeOptions(language="fr"))
    assert family.calls == [("fr", ["a", "b", "c"])]  # --language decides for every utterance
    row = {"n_utterances": 2, "wer": 0.5, "cer": 0.25, "metric": "wer", "error_rate": 0.5}
    zh = {**row, "metric": "cer", "error_rate": 0.25}
    result = {
        "model": "m", "data": "d", "family": "seq2seq", "wer": 0.5, "wer_raw": 0.5, "cer": 0.2, "rtf": 0.1,
        "tokens_per_second": 1.0, "peak_memory_mb": 1, "peak_memory_kind": "rss", "params": 1e6, "disk_mb": 1,
        "dtype": "float32", "n_utterances": 4, "n_skipped": 0, "audio_seconds": 4, "compute_seconds": 1,
        "device": "cpu", "threads": 1, "batch_size": 8, "beam_size": 1, "language": None, "timing": "t",
        "date": "now", "per_language": {"de": row, "zh": zh},
    }  # fmt: skip
    md = eval_markdown(result)
    assert (
        "| de | 2 | 50.00 % | 25.00 % | WER 50.00 % |" in md
        and "| zh | 2 | 50.00 % | 25.00 % | CER 25.00 % |" in md
    )
