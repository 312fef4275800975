"""Word n-gram LMs (ARPA: built, read, scored) and the CTC student's beam search with one."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from geodistill.decoding.ngram import BOS, EOS, UNK, LMFileError, build_arpa, read_arpa
from geodistill.errors import GeodistillError
from geodistill.evaluate.run import evaluate
from geodistill.students.ctc.beam import Scorer, beam_search
from geodistill.students.ctc.lm import load_lm, text_sentences
from geodistill.students.ctc.loss import CHAR_IDS, CHARS
from geodistill.students.ctc.model import ctc_greedy
from geodistill.students.ctc.units import train_bpe

# A hand-written bigram LM: "front" follows <s> and precedes "door"; "frint" is not a word it knows.
TINY_ARPA = """
\\data\\
ngram 1=6
ngram 2=4

\\1-grams:
-1.0\t</s>
-99\t<s>\t-0.3
-3.0\t<unk>
-0.7\tfront\t-0.2
-0.9\tdoor\t-0.2
-1.2\tcenter\t-0.2

\\2-grams:
-0.1\t<s> front
-0.2\tfront door
-0.3\tfront center
-0.1\tdoor </s>

\\end\\
"""


def frames_for(spelling: list[dict[str, float]]) -> np.ndarray:
    """Log-probs (T, V): each listed frame puts its characters' probabilities in, the rest on the blank;
    a blank frame follows each so repeated letters stay two."""
    rows = []
    for frame in spelling:
        p = np.full(len(CHARS), 1e-6)
        for c, q in frame.items():
            p[CHAR_IDS[c]] = q
        p[0] = max(1.0 - p.sum(), 1e-6)
        rows.append(p / p.sum())
        blank = np.full(len(CHARS), 1e-6)
        blank[0] = 1.0
        rows.append(blank / blank.sum())
    return np.log(np.stack(rows))


def test_kneser_ney_probabilities_sum_to_one_in_every_context(tmp_path):
    sentences = [s.split() for s in ("the front door is open", "close the front door", "a front row seat")]
    path = tmp_path / "lm.arpa"
    path.write_text(build_arpa(sentences, 3))
    lm = read_arpa(path)
    assert lm.order == 3 and lm.words == {w for s in sentences for w in s}
    vocab = [*lm.words, EOS, UNK]
    for context in [(BOS,), (BOS, "the"), ("the", "front"), ("never", "seen")]:
        assert math.isclose(sum(10 ** lm.logp(context, w) for w in vocab), 1.0, abs_tol=1e-4), context
    # a seen continuation beats an unseen one; an unknown word scores as <unk>
    assert lm.logp(("the", "front"), "door") > lm.logp(("the", "front"), "seat")
    assert lm.logp((BOS,), "zebra") == lm.logp((BOS,), UNK)


def test_beam_search_with_a_hand_written_lm_prefers_the_lms_word(tmp_path):
    # the acoustics lean to "frint" (i 0.55 over o 0.45); the LM knows "front"
    spelling = [{"f": 0.9}, {"r": 0.9}, {"i": 0.55, "o": 0.45}, {"n": 0.9}, {"t": 0.9}]
    frames = frames_for(spelling)
    path = tmp_path / "tiny.arpa"
    path.write_text(TINY_ARPA)
    lm = load_lm(path, CHARS)
    greedy = ctc_greedy(torch.from_numpy(frames)[None], torch.tensor([len(frames)]), CHARS)
    assert greedy == ["frint"]
    assert beam_search(frames, CHARS, 8, Scorer(None, 0.0, 0.0)) == "frint"  # no LM: the acoustics decide
    assert beam_search(frames, CHARS, 8, Scorer(lm, 1.0, 0.0)) == "front"
    # two words: the space completes "front", the bigram then favours "door"
    two = frames_for([*spelling, {" ": 0.9}, {"d": 0.9}, {"o": 0.9}, {"o": 0.9}, {"r": 0.9}])
    assert beam_search(two, CHARS, 8, Scorer(lm, 1.0, 0.0)) == "front door"


def test_beam_search_over_bpe_pieces_joins_words_at_word_starts():
    units = train_bpe(["the front door", "front door open", "the door"] * 5, 35)
    ids = units.encode("the front door")[0]
    frames = np.full((2 * len(ids), len(units.vocab)), np.log(1e-6))
    for k, i in enumerate(ids):
        frames[2 * k, i] = 0.0
        frames[2 * k + 1, 0] = 0.0
    frames -= np.logaddexp.reduce(frames, axis=1, keepdims=True)
    assert beam_search(frames, units.vocab, 4, Scorer(None, 0.0, 0.0)) == "the front door"


def test_lm_build_writes_an_arpa_file_from_plain_text(tmp_path):
    text = tmp_path / "book.txt"
    text.write_text("The front door\nwas open. Close the front door!\n\nA new paragraph; 3 doors.\n")
    out = tmp_path / "lm.arpa"
    cmd = [
        sys.executable,
        "-m",
        "geodistill.cli",
        "lm",
        "build",
        str(text),
        "--order",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "2-gram LM of 4 sentences" in proc.stdout
    lm = read_arpa(out)
    assert lm.order == 2 and {"front", "door", "three", "doors"} <= lm.words
    assert lm.logp((BOS,), "the") > lm.logp((BOS,), "paragraph")
    assert list(text_sentences("One two.\nthree\n\nfour")) == [["one", "two"], ["three"], ["four"]]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("hello world\n", "not an ARPA file (no \\data\\ header"),
        (TINY_ARPA.replace("ngram 2=4", "ngram 2=9"), "\\data\\ says 9 2-grams, the file holds 4 (damaged?)"),
        (TINY_ARPA.replace("-0.2\tfront door", "x\tfront door"), ": not a number in 'x\\tfront door'"),
        (TINY_ARPA.split("\\2-grams:")[0], "ends without \\end\\ (truncated?)"),
    ],
)
def test_a_corrupt_lm_file_is_one_line(tmp_path, content, expected):
    path = tmp_path / "bad.arpa"
    path.write_text(content)
    with pytest.raises(LMFileError) as err:
        read_arpa(path)
    assert str(err.value).startswith(f"--lm {path}") and expected in str(err.value)
    assert "\n" not in str(err.value)


def test_an_lm_the_model_cannot_spell_is_one_line(tmp_path):
    path = tmp_path / "cased.arpa"
    path.write_text(TINY_ARPA.replace("front", "Front").replace("door", "Door").replace("center", "Centre!"))
    with pytest.raises(GeodistillError) as err:
        load_lm(path, CHARS)
    msg = str(err.value)
    assert "100 % of its 3 words use characters the model cannot emit (e.g. 'Centre!')" in msg
    assert "\n" not in msg
    with pytest.raises(LMFileError, match="cannot read it"):
        read_arpa(tmp_path / "missing.arpa")


def test_evaluate_records_the_beam_and_lm_in_eval_json(random_ctc_dir, tiny_data, tmp_path):
    train_spec, _ = tiny_data
    lm = tmp_path / "lm.arpa"
    lm.write_text(build_arpa([["the", "quick", "brown", "fox"], ["a", "lazy", "dog"]], 2))
    greedy = evaluate(str(random_ctc_dir), str(train_spec), limit=2, device="cpu")
    beam1 = evaluate(str(random_ctc_dir), str(train_spec), limit=2, device="cpu", ctc_beam=1)
    assert greedy["ctc_beam"] == 1 and greedy["lm"] is None and greedy["decoding"].startswith("greedy")
    assert beam1["wer"] == greedy["wer"]
    result = evaluate(
        str(random_ctc_dir),
        str(train_spec),
        limit=2,
        device="cpu",
        out=tmp_path / "ev",
        ctc_beam=4,
        lm=str(lm),
    )
    saved = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert saved["ctc_beam"] == 4 and saved["lm"] == str(lm) and saved["lm_alpha"] == 0.5
    assert saved["decoding"] == f"CTC prefix beam search, 4 hypotheses, word LM {lm} (alpha 0.5, beta 1)"
    assert "prefix beam search" in saved["timing"] and result["wer"] == saved["wer"]


def test_beam_flags_are_refused_where_they_do_not_apply(random_ctc_dir, tiny_data, tmp_path):
    train_spec, _ = tiny_data
    with pytest.raises(
        GeodistillError, match=r"^--lm x.arpa: the LM scores beam hypotheses; add --ctc-beam N"
    ):
        evaluate(str(random_ctc_dir), str(train_spec), limit=1, device="cpu", lm="x.arpa")
    with pytest.raises(GeodistillError, match=r"^--ctc-beam 4: for CTC students only"):
        evaluate("tiny.en", str(train_spec), limit=1, device="cpu", ctc_beam=4)
