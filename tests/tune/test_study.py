"""Real studies on tiny random models: each trial is a 2-step training run validated after each step."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import geodistill.train.loop as loop
from geodistill.errors import GeodistillError
from geodistill.tune import Objective, search_space, storage_url, tune

PNG = b"\x89PNG\r\n\x1a\n"


def _load(cfg) -> optuna.Study:
    return optuna.load_study(study_name=Path(cfg.run_dir).name, storage=storage_url(cfg, None))


def _states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in sorted(study.trials, key=lambda t: t.number)]


@pytest.mark.slow
def test_study_runs_n_trials_writes_outputs_and_a_rerun_continues_to_n_in_total(tune_cfg):
    cfg = tune_cfg("study")
    study_dir = Path(cfg.run_dir)
    best = tune(cfg)  # tune.n_trials = 3

    study = _load(cfg)
    assert _states(study) == [TrialState.COMPLETE] * 3
    for t in study.trials:
        run = study_dir / f"trial-{t.number}"
        assert t.user_attrs["run_dir"] == str(run.resolve())
        assert (run / "adapter_final" / "model.safetensors").is_file()
        assert json.loads((run / "training_config.json").read_text())["config"]["train"]["max_steps"] == 2
        assert sorted(t.intermediate_values) == [1, 2]  # a report at each validation
        assert t.value == t.intermediate_values[2]  # the objective is the final validation WER
    lrs = {t.params["train.lr"] for t in study.trials}
    assert len(lrs) == 3 and all(1e-4 <= lr <= 1e-2 for lr in lrs)

    # best_params.json is the study's best trial, and tune() returns it.
    on_disk = json.loads((study_dir / "best_params.json").read_text())
    assert on_disk == best
    b = study.best_trial
    assert (best["params"], best["value"], best["trial"]) == (b.params, b.value, b.number)
    assert best["run_dir"] == str((study_dir / f"trial-{b.number}").resolve())
    assert best["trials"]["counted"] == best["trials"]["complete"] == 3
    with open(study_dir / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["number"]) for r in rows] == [0, 1, 2] and {r["state"] for r in rows} == {"COMPLETE"}
    assert "params_train.lr" in rows[0]
    # Importances need values that differ; tiny random students can all score the same WER.
    plots = ["optimization_history.png", "intermediate_values.png"]
    if len({t.value for t in study.trials}) > 1:
        plots.append("param_importances.png")
    else:
        assert best["plots"]["param_importances.png"].startswith("skipped: every complete trial has the same")
    for name in plots:
        assert best["plots"][name] == "written"
        assert (study_dir / name).read_bytes()[:8] == PNG
    assert "Trial 2 finished with value" in (study_dir / "tune.log").read_text()
    cache = study_dir / "teacher_cache"  # built once, read by every trial
    assert json.loads((cache / "index.json").read_text())["status"] == "complete"

    # Rerunning continues the same study to N in total: 4 means one more trial, then none.
    again = tune(cfg, n_trials=4)
    assert again["trials"]["total"] == 4 and (study_dir / "trial-3").is_dir()
    assert tune(cfg, n_trials=4)["trials"]["total"] == 4
    assert len(_load(cfg).trials) == 4 and not (study_dir / "trial-4").exists()


@pytest.mark.slow
def test_a_trial_worse_than_the_median_is_pruned_at_its_first_report(tune_cfg):
    cfg = tune_cfg("pruned", tune={"n_trials": 2, "pruner_startup_trials": 1, "pruner_warmup_steps": 0})
    # A finished trial that reached WER 0 at every step sets the median; any real trial is worse.
    Path(cfg.run_dir).mkdir(parents=True)
    study = optuna.create_study(study_name="pruned", storage=storage_url(cfg, None), direction="minimize")
    space = search_space(cfg)
    study.add_trial(
        optuna.trial.create_trial(
            params={name: dist.low for name, dist in space.items()},
            distributions=space,
            value=0.0,
            intermediate_values={1: 0.0, 2: 0.0},
        )
    )
    best = tune(cfg)

    study = _load(cfg)
    assert _states(study) == [TrialState.COMPLETE, TrialState.PRUNED]
    for t in study.trials[1:]:
        assert list(t.intermediate_values) == [1] and t.intermediate_values[1] > 0  # stopped after step 1
        run = Path(cfg.run_dir) / f"trial-{t.number}"
        assert not (run / "adapter_final").exists()  # training really stopped
    assert best["trial"] == 0 and best["trials"]["pruned"] == 1 and best["trials"]["counted"] == 2
    assert best["plots"]["param_importances.png"].startswith("skipped: needs >= 2 complete trials")


@pytest.mark.slow
def test_failing_trials_are_recorded_and_the_study_goes_on(tune_cfg, monkeypatch):
    cfg = tune_cfg("failing", tune={"n_trials": 3})
    real_train = loop.train

    def flaky_train(trial_cfg, **kwargs):
        number = int(Path(trial_cfg.run_dir).name.split("-")[1])
        if number == 0:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        result = real_train(trial_cfg, **kwargs)
        if number == 2:
            result.final_wer = math.nan  # a diverged run
        return result

    monkeypatch.setattr(loop, "train", flaky_train)
    best = tune(cfg)

    study = _load(cfg)
    assert _states(study) == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL]
    t0, _, t2 = sorted(study.trials, key=lambda t: t.number)
    assert t0.user_attrs["error"].startswith("OutOfMemoryError: CUDA out of memory")
    assert "no finite validation WER (got nan)" in t2.user_attrs["error"]
    study_dir = Path(cfg.run_dir)
    assert "Traceback" in (study_dir / "trial-0" / "error.txt").read_text()
    assert "OutOfMemoryError" in (study_dir / "trial-0" / "error.txt").read_text()
    assert "no finite validation WER" in (study_dir / "trial-2" / "error.txt").read_text()
    assert not (study_dir / "trial-1" / "error.txt").exists()
    assert best["trial"] == 1 and best["trials"]["fail"] == 2 and best["trials"]["counted"] == 3


def test_ctrl_c_stops_the_study_and_records_the_trial(tune_cfg, monkeypatch):
    cfg = tune_cfg("interrupted", tune={"n_trials": 5})

    def interrupted(trial_cfg, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune(cfg)
    assert _states(_load(cfg)) == [TrialState.FAIL]  # recorded, and no further trial was started


@pytest.mark.slow
def test_trials_share_one_teacher_and_leave_it_unchanged(tune_cfg):
    cfg = tune_cfg("shared")
    objective = Objective(cfg, search_space(cfg), Path(cfg.run_dir))
    teacher, _ = objective.teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    study = optuna.create_study(direction="minimize")
    Path(cfg.run_dir).mkdir(parents=True)
    study.optimize(objective, n_trials=2)
    assert objective.teacher()[0] is teacher
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2


@pytest.mark.slow
def test_a_killed_workers_trial_is_marked_failed_and_requeued_once(tune_config):
    path = tune_config("killed", tune={"n_trials": 1})
    study_dir = path.parent / "killed"
    # A worker process dies (SIGKILL) right after trial 0's first checkpoint, leaving it RUNNING.
    env = {**os.environ, loop.CRASH_ENV: "1", "OMP_NUM_THREADS": "1"}
    dead = subprocess.run(
        [sys.executable, "-m", "geodistill.cli", "tune", "--config", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert dead.returncode == -9, dead.stderr[-2000:]
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{study_dir}/optuna.db")
    assert _states(study) == [TrialState.RUNNING]
    time.sleep(4)  # past the grace period of 4 heartbeats of 1 s

    from geodistill.config import load_config

    best = tune(load_config(path), heartbeat_s=1)
    trials = sorted(_load(load_config(path)).trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    retry = trials[1]  # takes the dead trial's place in the budget, with its parameters
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == trials[0].params
    assert best["trials"] == {**best["trials"], "counted": 1, "total": 2, "fail": 1, "complete": 1}
    assert best["trial"] == 1 and (Path(best["run_dir"]) / "adapter_final").is_dir()


def test_an_unloadable_teacher_is_one_error_before_any_trial(tune_cfg):
    cfg = tune_cfg("noteacher", teacher="/nonexistent/whisper-teacher")
    with pytest.raises(GeodistillError, match="/nonexistent/whisper-teacher"):
        tune(cfg)
    assert _load(cfg).trials == []


def test_the_budget_is_counted_inside_the_transaction_that_locks_the_study(tmp_path):
    """Counting through a storage getter would commit the locked transaction early (the scoped session is
    shared), letting two workers number a new trial alike; the count must not commit."""
    from sqlalchemy import event

    from geodistill.tune import BudgetSpent, BudgetStorage

    storage = BudgetStorage(f"sqlite:///{tmp_path / 'budget.db'}", max_trials=2)
    study = optuna.create_study(storage=storage, study_name="budget")
    commits_inside: list[int] = []
    prepare = storage._get_prepared_new_trial

    def probe(study_id, template_trial, session):
        def listener(_session) -> None:
            commits_inside.append(1)

        event.listen(session, "after_commit", listener)
        try:
            return prepare(study_id, template_trial, session)
        finally:
            event.remove(session, "after_commit", listener)

    storage._get_prepared_new_trial = probe
    assert [study.ask().number for _ in range(2)] == [0, 1]
    with pytest.raises(BudgetSpent):
        study.ask()
    assert commits_inside == []


def test_the_study_cache_holds_the_base_students_cross_attention_keys_values(tune_cfg, tmp_path, caplog):
    lora = {"r": 4, "alpha": 8, "dropout": 0.1, "targets": "decoder-text-side"}
    cfg = tune_cfg(
        "kv", student={"lora": lora}, teacher_cache=str(tmp_path / "kv-cache"), teacher_cache_cross_kv=True
    )
    objective = Objective(cfg, search_space(cfg), Path(cfg.run_dir))
    Path(cfg.run_dir).mkdir(parents=True)
    assert objective.teacher_outputs().offer.cross_kv_layers == (1,)  # the copy student keeps teacher layer 1
    caplog.set_level("INFO", logger="geodistill")
    study = optuna.create_study(direction="minimize")
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == TrialState.COMPLETE
    assert "reused from teacher layers [1]" in caplog.text  # the trial read them from the study's cache


def test_a_requeued_trial_takes_its_originals_place_in_the_budget_without_warnings():
    import warnings

    from optuna.trial import create_trial

    from geodistill.tune import budget_used

    original = create_trial(state=TrialState.FAIL)
    retry = create_trial(state=TrialState.COMPLETE, value=0.5, system_attrs={"failed_trial": 0})
    fresh = create_trial(state=TrialState.COMPLETE, value=0.4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's experimental retry API must not warn once per trial
        assert budget_used([original, retry]) == 1
        assert budget_used([original, retry, fresh]) == 2
