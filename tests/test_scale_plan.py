"""scripts/scale_plan.py: docs/scale.md's per-100-h tables from a built gpu_step result (the arithmetic, by
hand below), the unmeasured marks without one, and one line for a result that cannot serve."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "scale_plan.py"


@pytest.fixture(scope="module")
def scale_plan():
    try:
        yield load_script(SCRIPT)
    finally:
        sys.modules.pop("scale_plan", None)


def fake_result(path: Path, device: str = "cuda", size: str = "full") -> Path:
    rows = [
        {"name": f"preset {p}", "step_s": 0.5, "max_reserved_mb": 20480.0, "trainable_params_m": 10.0}
        for p in ("distil-large-v2", "thesis", "distil-large-v3")
    ]
    report = {
        "device": device,
        "device_name": "Fake GPU",
        "size": size,
        "date": "2030-01-01",
        "rows": [{"name": "baseline", "step_s": 9.0}, *rows],
        "teacher_pass": {"forward_utt_per_s": 100.0, "generate_utt_per_s": 10.0},
    }
    path.write_text(json.dumps(report))
    return path


def cells(text: str, preset: str, row_start: str) -> list[str]:
    """The (1 GPU, 8 GPUs) cells of the row starting ``row_start`` in ``preset``'s table."""
    section = text.split(f"### {preset}\n", 1)[1].split("### ", 1)[0]
    line = next(x for x in section.splitlines() if x.startswith(row_start))
    return [c.strip() for c in line.strip("|").split("|")[-2:]]


def test_measured_rows_are_filled_from_the_step_time_and_teacher_rates(scale_plan, tmp_path, capsys):
    doc = tmp_path / "scale.md"
    doc.write_text("# Scale\n\nkept\n")
    assert scale_plan.main(["--result", str(fake_result(tmp_path / "r.json")), "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# Scale\n\nkept\n") and capsys.readouterr().out.strip() in text
    assert "Fake GPU, 2030-01-01" in text and "unmeasured" not in text
    # N = 100 h x 3600 / 12.7 s = 28,346.5 utterances.
    # Generation at 10 utt/s: 2834.6 s = 0.79 h on one GPU, 0.10 h on 8.
    assert cells(text, "distil-large-v2", "| (a) pseudo-labels") == ["0.79 h", "0.10 h"]
    # Teacher forward at 100 utt/s: 283.5 s = 0.08 h, 0.01 h on 8.
    assert cells(text, "distil-large-v3", "| (b) teacher cache build") == ["0.08 h", "0.01 h"]
    # One pass at batch 32, 0.5 s a step: 28,346.5 / 32 x 0.5 = 442.9 s = 0.12 h; 8 GPUs 0.02 h.
    assert cells(text, "distil-large-v2", "| (c) one pass") == ["0.12 h", "0.02 h"]
    assert cells(text, "distil-large-v2", "| (c) optimiser steps") == ["886", "111"]
    # thesis: batch 16, so twice the steps of a pass; its 10,000 steps take 5000 s = 1.39 h anywhere.
    assert cells(text, "thesis", "| (c) optimiser steps") == ["1,772", "222"]
    assert cells(text, "thesis", "| (c) the preset's 10,000 steps") == ["1.39 h", "1.39 h"]
    # distil-large-v3: 80,000 steps x 8 micro-batches x 0.5 s = 88.9 h; 80,000 x 256 x G / N passes.
    assert cells(text, "distil-large-v3", "| (c) the preset's 80,000 steps") == ["89 h", "89 h"]
    assert cells(text, "distil-large-v3", "| (c) ... passes") == ["722.5", "5779.9"]
    # 12 B x 10 M trainable = 114.4 MiB; 20480 MiB reserved = 20.0 GiB.
    assert cells(text, "thesis", "| checkpoint.pt") == ["114.4 MiB", "114.4 MiB"]
    assert cells(text, "thesis", "| peak GPU memory") == ["20.0 GiB", "20.0 GiB"]
    assert cells(text, "thesis", "| (b) teacher cache") == ["-", "-"]
    # Written again: the section is replaced, not appended.
    assert scale_plan.main(["--write", str(doc)]) == 0
    assert doc.read_text().count(scale_plan.START) == 1 and "Fake GPU" not in doc.read_text()


def test_without_a_result_every_gpu_cell_is_marked_and_sizes_still_computed(scale_plan, capsys):
    assert scale_plan.main([]) == 0
    text = capsys.readouterr().out
    for preset in ("distil-large-v2", "thesis", "distil-large-v3"):
        for row in ("| (a) pseudo-labels", "| (c) one pass", "| (c) the preset's", "| peak GPU memory"):
            assert cells(text, preset, row) == [scale_plan.UNMEASURED] * 2
    assert not re.search(r"\| [\d.,]+ h \|", text)  # no time cell without a measurement
    # The cache size: the cache table's per-hour figure x 100 (with encoder states: a copy's whole encoder).
    assert cells(text, "distil-large-v2", "| (b) teacher cache on disk") == ["105.0 GiB", "105.0 GiB"]
    assert cells(text, "distil-large-v2", "| (c) ... passes") == ["11.3", "90.3"]


def test_a_result_that_cannot_serve_gets_one_line(scale_plan, tmp_path, capsys):
    path = fake_result(tmp_path / "r.json", "cpu", "tiny")  # the CPU mode's result: no GPU throughput
    assert scale_plan.main(["--result", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "needs benchmarks/gpu_step.py --size full on CUDA" in err
    report = json.loads(fake_result(path).read_text())
    report["rows"] = report["rows"][:2]  # baseline and preset distil-large-v2 only (a run with --only)
    path.write_text(json.dumps(report))
    assert scale_plan.main(["--result", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no row 'preset thesis', row 'preset distil-large-v3'" in err
