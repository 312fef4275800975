"""benchmarks/gpu_step.py in its CPU mode at a tiny size: the real training step runs for each row, the checks
pass, and the table and JSON hold what a GPU run would report (CUDA-only rows marked, not measured)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_step.py"


@pytest.fixture(scope="module")
def gpu_step():
    try:
        yield load_script(BENCH)
    finally:
        sys.modules.pop("gpu_step", None)


def test_cpu_mode_measures_each_row_and_writes_table_and_json(gpu_step, tmp_path, capsys):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nkept text\n")
    rows = ["baseline", "teacher cache", "full decoder (no LoRA)", "batch 1", "bf16", "teacher on CPU"]
    rows.append(
        "preset thesis"
    )  # a shipped preset's student and loss as they are (pretrained, 4 dec. layers)
    args = ["--device", "cpu", "--size", "tiny", "--steps", "1", "--batch-sizes", "1", "2"]
    args += [
        "--work",
        str(tmp_path / "work"),
        "--json",
        str(tmp_path / "r.json"),
        "--write",
        str(doc),
        "--only",
    ]
    assert gpu_step.main([*args, *rows]) == 0

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["device"] == "cpu" and report["size"] == "tiny" and report["steps"] == 1
    by_name = {r["name"]: r for r in report["rows"]}
    assert list(by_name) == [
        "baseline",
        "teacher cache",
        "bf16",
        "batch 1",
        "full decoder (no LoRA)",
        "teacher on CPU",
        "preset thesis",
    ]
    for name in ("bf16", "teacher on CPU"):
        assert "CUDA only" in by_name[name]["skipped"]
    measured = [r for r in report["rows"] if "skipped" not in r]
    for r in measured:
        assert r["ok"] and r["step_s"] > 0 and r["peak_rss_mb"] > 0
        assert len(r["losses"]) == 2 and all(math.isfinite(v) for v in r["losses"])
        assert r["steps_applied"] == 2 and 0 < r["tensors_changed"] == r["tensors_trained"]
    assert by_name["batch 1"]["batch"] == 1 and by_name["baseline"]["batch"] == 2
    assert by_name["teacher cache"]["teacher"] == "cache"
    thesis = by_name["preset thesis"]  # the preset's batch, precision and online teacher
    assert (thesis["batch"], thesis["amp"], thesis["teacher"], thesis["student"]) == (
        16,
        "fp16",
        "online",
        "small",
    )
    # The teacher's two passes: forward (cache build) and generation (pseudo-labels) to the asked length.
    passes = report["teacher_pass"]
    assert passes["ok"] and passes["batch"] == 2 and passes["new_tokens"] == 44
    assert passes["decoder_positions"] == 48 and passes["generate_s"] > 0 and passes["forward_s"] > 0
    assert passes["generate_utt_per_s"] == pytest.approx(2 / passes["generate_s"])
    # Full decoder training trains far more than LoRA's adapters.
    assert (
        by_name["full decoder (no LoRA)"]["trainable_params_m"]
        > 10 * by_name["baseline"]["trainable_params_m"]
    )

    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nkept text\n") and "## GPU step" in text
    assert f"### GPU step: {report['device_name']} (cpu, size tiny)" in text
    assert "| row | teacher | precision |" in text and "peak RSS MiB" in text
    assert "| bf16 | CUDA only (not measured here) |" in text
    assert "| greedy generation (pseudo-labels) |" in text
    assert text.count("| ok (") == len(measured) and "FAILED" not in text
    assert capsys.readouterr().out.strip() in text
    # Run again: the section is replaced, not appended.
    assert gpu_step.main([*args, "baseline"]) == 0
    again = doc.read_text()
    assert again.count("<!-- gpu_step:start -->") == 1 and "teacher cache" not in again.split("kept text")[1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_only_rows_run_at_tiny_size(gpu_step, tmp_path):
    rows = ["baseline", "bf16", "teacher on CPU", "teacher cache"]
    args = ["--device", "cuda", "--size", "tiny", "--steps", "2", "--batch-sizes", "2"]
    assert gpu_step.main([*args, "--work", str(tmp_path), "--only", *rows]) == 0
    report = json.loads((tmp_path / "result.json").read_text())
    by_name = {r["name"]: r for r in report["rows"]}
    assert list(by_name) == ["baseline", "teacher cache", "bf16", "teacher on CPU"]
    for r in by_name.values():
        assert r["ok"] and r["max_reserved_mb"] >= r["max_allocated_mb"] > 0
    assert by_name["baseline"]["amp"] == "fp16" and by_name["bf16"]["amp"] == "bf16"
