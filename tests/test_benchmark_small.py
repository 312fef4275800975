"""benchmarks/dynamic_context.py in its small mode (the real tiny.en, one 2-s clip, one round, two tokens), so
it cannot rot: it runs end to end and times both audio contexts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(script: str, *args: str) -> str:
    cmd = [sys.executable, str(BENCHMARKS / script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=None)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.integration
def test_dynamic_context_small_mode_times_both_contexts():
    out = _run(
        "dynamic_context.py",
        "--model",
        "tiny.en",
        "--lengths",
        "2",
        "--rounds",
        "1",
        "--tokens",
        "2",
        "--threads",
        "1",
    )
    assert "full" in out and "dynamic" in out and "| 2" in out


@pytest.mark.integration
def test_teacher_cache_small_mode_compares_online_and_cached_steps(tmp_path):
    """benchmarks/teacher_cache.py at its smallest (the real tiny.en, 4 utterances, one round of 2 steps: the
    first is the warm-up its medians leave out, the second is timed)."""
    work = tmp_path / "bench"
    out = _run(
        "teacher_cache.py",
        "--teacher",
        "tiny.en",
        "--steps",
        "2",
        "--utterances",
        "4",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--work",
        str(work),
    )
    assert "| phase | s |" in out and (work / "result.json").is_file()
