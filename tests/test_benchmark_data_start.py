"""benchmarks/data_start.py in its small mode (300 rows), so it cannot rot: the first start probes every
file, the second probes none and keeps the same utterances."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "data_start.py"


def test_data_start_small_mode(tmp_path):
    out = tmp_path / "bench.md"
    cmd = [sys.executable, str(SCRIPT), "--rows", "300", "--work", str(tmp_path / "w"), "--write", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    starts = json.loads((tmp_path / "w" / "result.json").read_text())["starts"]
    assert starts["first"]["probed"] == 300 and starts["second"]["probed"] == 0
    assert starts["first"]["kept"] == starts["second"]["kept"] == 300
    assert "| second |" in out.read_text()
