"""The command line: one-line errors with exit code 2, no traceback unless --debug."""

from __future__ import annotations

import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "geodistill.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_unknown_model_is_one_line_and_exit_2(tmp_path):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    proc = run("transcribe", str(tmp_path / "no-such-model"), str(tmp_path / "a.wav"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-model" in lines[0]
    assert "Traceback" not in proc.stderr


def test_bad_config_key_is_reported_before_any_compute(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("train: {max_step: 3}\n")
    proc = run("train", "--config", str(config))
    assert proc.returncode == 2
    assert "train.max_step: unknown key" in proc.stderr and "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(tmp_path):
    proc = run(
        "--debug", "evaluate", "--model", str(tmp_path / "nope"), "--data", str(tmp_path / "none.jsonl")
    )
    assert proc.returncode == 2 and "Traceback" in proc.stderr
