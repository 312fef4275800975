"""benchmarks/long_form.py in its small mode (tiny.en on about 42 s of joined LibriVox speech, each engine
and mode), so it cannot rot: every row is scored against the joined reference, and the chunked rows decode
the windows the engine's geometry says."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark
from tests.evaluate.test_integration import librivox_rows


@pytest.mark.integration
@pytest.mark.slow
def test_long_form_small_mode_scores_each_mode_on_each_engine(tmp_path, capsys):
    librivox_rows(5)  # skips, naming the package, without pocketsphinx-testdata
    pytest.importorskip("faster_whisper")
    pytest.importorskip("silero_vad")
    bench = load_benchmark("long_form")
    out, doc = tmp_path / "long_form.json", tmp_path / "doc.md"
    assert bench.main(["--small", "--batch-size", "2", "--json", str(out), "--write", str(doc)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["engine"], r["mode"]) for r in rows] == [
        (e, m) for e in ("hf", "ct2") for m in ("sequential", "vad", "chunked")
    ]
    for r in rows:
        assert 40 < r["audio_seconds"] < 45 and r["n_ref_words"] == 104
        assert 0 < r["rtf"] < 10 and r["threads"] == 1
        # tiny.en gets LibriVox nearly right; a lost window or a decoded-twice one would cost far more
        assert r["wer"] < 0.1, r
    # 42 s: windows start at 0 and 20 s; batch 2 -> one batch
    chunked = [(r["chunked_windows"], r["chunked_batches"]) for r in rows if r["mode"] == "chunked"]
    assert chunked == [(2, 1), (2, 1)]
    assert all(r["chunked_windows"] == 0 for r in rows if r["mode"] != "chunked")
    text = doc.read_text()
    assert "<!-- long-form:start -->" in text and "| hf | `--long-form chunked`, windows batched |" in text
