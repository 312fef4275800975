"""The engines benchmarks in their small modes, so neither can rot: benchmarks/engines.py (teacher vs
student, each engine, batch 1) and benchmarks/whispercpp_rtf.py (f16 vs q8_0 by thread count)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_benchmark


def test_engines_small_mode_measures_teacher_and_student_in_each_engine(tmp_path, capsys):
    pytest.importorskip("pywhispercpp")
    engines = load_benchmark("engines")
    out, doc = tmp_path / "engines.json", tmp_path / "bench.md"
    assert (
        engines.main(["--small", "--engines", "hf", "whispercpp", "--json", str(out), "--write", str(doc)])
        == 0
    )
    result = json.loads(out.read_text())
    assert [r["engine"] for r in result["rows"]] == ["hf", "whispercpp"]
    for row in result["rows"]:
        assert row["student"]["audio_context"] == "dynamic" and row["teacher"]["audio_context"] == "full"
        assert row["teacher"]["rtf"] > 0 and row["student"]["n_utterances"] == 2
    assert row["student"]["dtype"] == "q8_0"
    assert "| whispercpp (q8_0) |" in doc.read_text() and "<!-- engines:start -->" in doc.read_text()


def test_whispercpp_rtf_small_mode_runs_each_type(tmp_path, capsys):
    pytest.importorskip("pywhispercpp")
    bench = load_benchmark("whispercpp_rtf")
    engines = load_benchmark("engines")
    teacher, _, _ = engines.small_models(tmp_path)
    if not bench.real_clips()[0]:
        pytest.skip("no real clips (alsa-utils, pocketsphinx-testdata)")
    assert (
        bench.main(["--model", teacher, "--threads", "1", "--rounds", "1", "--clips", "1", "--no-fallback"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "f16" in printed and "q8_0" in printed
