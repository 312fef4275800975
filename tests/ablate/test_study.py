"""Real ablations on tiny random models: each cell is a 2-step training run validated after each step."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from geodistill.ablate import ablate, ablation_of_run
from geodistill.config import load_config
from geodistill.errors import GeodistillError
from geodistill.report.html import ablation_section

PNG = b"\x89PNG\r\n\x1a\n"
BUILT = "built once for every cell"


def _study(cfg) -> optuna.Study:
    return optuna.load_study(study_name=Path(cfg.run_dir).name, storage=f"sqlite:///{cfg.run_dir}/optuna.db")


@pytest.mark.slow
def test_an_ablation_completes_and_its_summary_holds_each_run_folders_numbers(ablate_cfg, tiny_data):
    variants = ["ce+kl", "ce+kl+mse", "ce+kl+geo"]
    cfg = ablate_cfg("grid", ablate={"run": variants, "seeds": 2, "test": str(tiny_data[1])})
    folder = Path(cfg.run_dir)
    summary = ablate(cfg)

    study = _study(cfg)
    assert {t.state for t in study.trials} == {TrialState.COMPLETE} and len(study.trials) == 6
    cells = sorted((t.params["variant"], t.params["seed"]) for t in study.trials)
    assert cells == sorted((v, s) for v in variants for s in (3, 4))  # seeds train.seed, train.seed + 1
    assert summary == json.loads((folder / "ablation.json").read_text())
    assert summary["cells"] == {"total": 6, "complete": 6} and summary["failed"] == []
    for name in variants:
        entry = summary["variants"][name]
        assert [r["seed"] for r in entry["seeds"]] == [3, 4] and entry["val_wer"]["n"] == 2
        for r in entry["seeds"]:
            run = Path(r["run_dir"])
            assert run.parent == folder.resolve()
            history = json.loads((run / "training_history.json").read_text())
            config = json.loads((run / "training_config.json").read_text())["config"]
            assert r["val_wer"] == history["val"][-1]["wer"]  # the final validation, as the trial's value
            assert r["final_loss"] == history["train"][-1]  # every loss part of the last step
            assert r["test_wer"] == json.loads((run / "eval-test" / "eval.json").read_text())["wer"]
            assert r == json.loads((run / "cell.json").read_text()) and r["train_seconds"] > 0
            assert config["train"]["seed"] == r["seed"] and config["train"]["max_steps"] == 2
            assert config["loss"]["hidden_loss"] == {"ce+kl": "none", "ce+kl+mse": "mse"}.get(
                name, "geodesic"
            )
            assert ("hidden" in r["final_loss"]) == (name != "ce+kl")
        vals = [r["val_wer"] for r in entry["seeds"]]
        assert entry["val_wer"]["mean"] == pytest.approx(sum(vals) / 2)
    pairs = {(c["a"], c["b"], c["metric"]) for c in summary["comparisons"]}
    assert pairs == {
        (a, b, m)
        for a, b in [("ce+kl+geo", "ce+kl+mse"), ("ce+kl+geo", "ce+kl")]
        for m in ("val_wer", "test_wer")
    }
    for c in summary["comparisons"]:
        geo = {r["seed"]: r[c["metric"]] for r in summary["variants"]["ce+kl+geo"]["seeds"]}
        other = {r["seed"]: r[c["metric"]] for r in summary["variants"][c["b"]]["seeds"]}
        assert c["mean_diff"] == pytest.approx(sum(geo[s] - other[s] for s in (3, 4)) / 2)
    md = (folder / "ablation.md").read_text()
    assert "| ce+kl+geo | 2/2 |" in md and "ce+kl+geo vs ce+kl+mse, validation WER" in md
    assert (folder / "ablation.png").read_bytes()[:8] == PNG
    log = (folder / "tune.log").read_text()
    assert log.count(BUILT) == 1 and "reused" not in log  # the teacher cache: built once, for all 6 cells

    # `geodistill report` on a cell's run folder shows the whole ablation.
    cell = Path(summary["variants"]["ce+kl+mse"]["seeds"][1]["run_dir"])
    found = ablation_of_run(cell)
    assert found["this_cell"]["variant"] == "ce+kl+mse" and found["this_cell"]["seed"] == 4
    section = ablation_section({"ablation": found})
    ((header, rows),) = section.tables
    assert [r[0] for r in rows] == variants and "test WER % (mean ± std)" in header
    assert "cell ce+kl+mse, seed 4" in section.paragraphs[0]
    assert ablation_of_run(folder) is None  # the ablation folder itself is not a cell

    # A rerun finds every cell finished and trains nothing.
    again = ablate(cfg)
    assert len(_study(cfg).trials) == 6 and again["variants"] == summary["variants"]
    assert "every cell has finished: nothing to train" in (folder / "tune.log").read_text()
    # Another grid in the same folder is refused: the cells would not be comparable.
    changed = ablate_cfg("grid", ablate={"run": variants, "seeds": 3, "test": str(tiny_data[1])})
    with pytest.raises(GeodistillError, match=r"this ablation ran variants .* with seeds \[3, 4\]"):
        ablate(changed)


def _training(folder: Path) -> bool:
    """True once a cell has finished and the next one is training (its run folder has a train.log: the
    trial's heartbeat is running, so a dead worker's trial will be found stale)."""
    db = folder / "optuna.db"
    if not db.is_file():
        return False
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            rows = conn.execute("SELECT number, state FROM trials").fetchall()
    except sqlite3.OperationalError:  # Optuna is still creating its tables
        return False
    running = [n for n, state in rows if state == "RUNNING"]
    complete = [n for n, state in rows if state == "COMPLETE"]
    return bool(complete) and len(running) == 1 and (folder / f"trial-{running[0]}" / "train.log").is_file()


@pytest.mark.slow
def test_a_killed_ablation_resumes_without_rerunning_finished_cells(ablate_config):
    path = ablate_config("killed", ablate={"run": ["ce", "ce+kl", "ce+kl+geo"], "seeds": 1})
    folder = path.parent / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "geodistill.cli", "ablate", "--config", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:  # kill -9 once a cell has finished and the next one is training
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if _training(folder):
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    cfg = load_config(path)
    before = {
        t.number: (t.params["variant"], (folder / f"trial-{t.number}" / "cell.json").stat().st_mtime_ns)
        for t in _study(cfg).trials
        if t.state == TrialState.COMPLETE
    }
    assert before and any(t.state == TrialState.RUNNING for t in _study(cfg).trials)
    time.sleep(4)  # past the grace period of 4 heartbeats of 1 s: the dead cell is failed and re-queued

    summary = ablate(cfg, heartbeat_s=1)
    trials = _study(cfg).trials
    assert summary["cells"] == {"total": 3, "complete": 3}
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["variant"] for t in done) == ["ce", "ce+kl", "ce+kl+geo"]  # each cell once
    for number, (variant, mtime) in before.items():  # finished cells were not trained again
        assert (folder / f"trial-{number}" / "cell.json").stat().st_mtime_ns == mtime
        assert summary["variants"][variant]["seeds"][0]["trial"] == number
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and len(trials) == 4  # the killed cell, retried once under a new number
    log = (folder / "tune.log").read_text()
    assert log.count("built once for every cell") == 1 and "reused" in log


@pytest.mark.slow
def test_a_failed_cell_is_recorded_and_run_again_by_the_next_ablate(ablate_cfg, monkeypatch):
    import torch

    import geodistill.train.loop as loop

    cfg = ablate_cfg("flaky", ablate={"run": ["ce", "ce+kl"], "seeds": 1})
    real_train = loop.train

    def oom_for_ce(trial_cfg, **kwargs):
        if trial_cfg.loss.kl_weight == 0:  # the `ce` cell
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_train(trial_cfg, **kwargs)

    monkeypatch.setattr(loop, "train", oom_for_ce)
    first = ablate(cfg)
    assert first["cells"] == {"total": 2, "complete": 1}
    (failed,) = first["failed"]
    assert failed["variant"] == "ce" and failed["error"].startswith("OutOfMemoryError: CUDA out of memory")
    md = (Path(cfg.run_dir) / "ablation.md").read_text()
    assert "## Cells failed" in md and "| ce | 0/1 | n/a |" in md
    finished = first["variants"]["ce+kl"]["seeds"][0]

    monkeypatch.setattr(loop, "train", real_train)
    second = ablate(cfg)  # the failed cell runs again, once; the finished one does not
    assert second["cells"] == {"total": 2, "complete": 2} and second["failed"] == []
    assert second["variants"]["ce+kl"]["seeds"][0] == finished
    states = sorted((t.params["variant"], t.state.name) for t in _study(cfg).trials)
    assert states == [("ce", "COMPLETE"), ("ce", "FAIL"), ("ce+kl", "COMPLETE")]
    assert ablate(cfg)["cells"]["complete"] == 2 and len(_study(cfg).trials) == 3


@pytest.mark.slow
def test_a_ctc_student_ablates_ctc_alone_against_mse_and_geodesic_hidden_losses(ablate_cfg, tiny_data):
    ctc = {"d_model": 32, "layers": 2, "heads": 2, "ffn": 64, "init_from_teacher": True, "frozen_layers": 1}
    cfg = ablate_cfg(
        "ctc_grid",
        ablate={"seeds": 1, "test": str(tiny_data[1])},
        student={"init": "ctc", "ctc": ctc},
        loss={"kl_weight": 0.0, "hidden_on": "encoder"},
        tune={"space": {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}},
    )
    summary = ablate(cfg)
    assert list(summary["variants"]) == ["ce", "ce+mse", "ce+geo"]  # no KL / TAID: the student has no decoder
    assert summary["cells"] == {"total": 3, "complete": 3} and summary["failed"] == []
    for name, entry in summary["variants"].items():
        for r in entry["seeds"]:
            assert (Path(r["run_dir"]) / "adapter_final" / "ctc_config.json").is_file()
            assert ("hidden" in r["final_loss"]) == (name != "ce") and "ctc" in r["final_loss"]
            assert r["test_wer"] is not None
    pairs = {(c["a"], c["b"]) for c in summary["comparisons"]}
    assert pairs == {("ce+geo", "ce+mse"), ("ce+geo", "ce")}
