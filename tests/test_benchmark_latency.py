"""benchmarks/latency.py in its small mode (a tiny random teacher at full context and student at dynamic
context, two synthetic clips), so it cannot rot: every part of a clip's time is measured in each engine and
the parts add up to the generate call."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark


@pytest.mark.slow
def test_latency_small_mode_splits_each_engines_time_and_measures_memory(tmp_path, capsys):
    pytest.importorskip("ctranslate2")
    latency = load_benchmark("latency")
    out, doc = tmp_path / "latency.json", tmp_path / "bench.md"
    argv = ["--small", "--engines", "hf", "ct2", "--batch-sizes", "1", "--json", str(out)]
    argv += ["--write", str(doc)]
    assert latency.main(argv) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["audio_context"], r["engine"]) for r in rows] == [
        ("full", "hf"), ("full", "ct2"), ("dynamic", "hf"), ("dynamic", "ct2")
    ]  # fmt: skip
    for r in rows:
        assert r["clips"] == 2 and r["steps_per_clip"] >= 1
        assert r["features_ms"] > 0 and r["encoder_ms"] > 0 and r["decoder_ms_per_step"] > 0
        parts = r["encoder_ms"] + r["decoder_ms_per_step"] * r["steps_per_clip"] + r["rest_ms"]
        assert parts == pytest.approx(r["generate_ms"]) and r["rest_ms"] >= 0
        assert r["peak_memory_mb"]["1"] > 0 and r["evaluate"]["1"]["n_utterances"] == 2
        assert (r["lm_head_ms_per_step"] is not None) == (r["engine"] == "hf")
    hf = [r for r in rows if r["engine"] == "hf"]
    assert all(0 < r["lm_head_ms_per_step"] < r["decoder_ms_per_step"] for r in hf)
    # the student's encoder sees its 1.5-2.5 s clips + 16 positions, the teacher's 30 s
    assert hf[1]["encoder_ms"] < hf[0]["encoder_ms"]
    text = doc.read_text()
    assert "<!-- latency:start -->" in text and "| full | ct2 |" in text and "| dynamic | hf |" in text
