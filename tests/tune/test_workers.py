"""Several `geodistill tune` processes share one study on a PostgreSQL server: each trial runs once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from geodistill.errors import GeodistillError
from tests.tune.conftest import PG_PASSWORD


@pytest.mark.slow
@pytest.mark.postgres
def test_two_commands_and_spawned_workers_share_one_study_on_postgres(tune_config, postgres_url, tmp_path):
    n = 4
    path = tune_config("machine-a", tune={"n_trials": n})
    base = [
        sys.executable,
        "-m",
        "geodistill.cli",
        "tune",
        "--config",
        str(path),
        "--storage",
        postgres_url,
        "--study",
        "shared",
    ]
    # "Machine A" runs two worker processes of its own; "machine B" is a second command with its own folder.
    commands = {
        "machine-a": base + ["--workers", "2"],
        "machine-b": base + [f"run_dir={tmp_path / 'machine-b'}"],
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # three processes on two cores
    procs = {
        name: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name, cmd in commands.items()
    }
    try:
        outputs = {name: p.communicate(timeout=400) for name, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    for name, p in procs.items():
        assert p.returncode == 0, outputs[name][1][-3000:]

    trials = sorted(
        optuna.load_study(study_name="shared", storage=postgres_url).trials, key=lambda t: t.number
    )
    assert [t.number for t in trials] == list(range(n))  # none lost, none extra
    assert {t.state for t in trials} == {TrialState.COMPLETE}  # pruner_startup_trials=5 > n: none pruned

    # Three worker processes ran (machine A's two spawned ones exited 0, or its command would not have) and
    # each trial names one of them. How the 4 trials split between them is up to the scheduler: under load
    # the worker that starts first can take them all, so the split is not asserted.
    spawned = re.search(r"started 2 worker processes \(pids (\d+), (\d+)\)", outputs["machine-a"][1])
    assert spawned, outputs["machine-a"][1][-3000:]
    pids = {"machine-a": set(spawned.groups()), "machine-b": {str(procs["machine-b"].pid)}}
    assert len(pids["machine-a"] | pids["machine-b"]) == 3

    # Each trial trained exactly once, in the folder of the command whose worker ran it.
    folders = [tmp_path / "machine-a", tmp_path / "machine-b"]
    found = sorted(d.name for f in folders for d in f.glob("trial-*"))
    assert found == sorted(f"trial-{i}" for i in range(n))
    for t in trials:
        run = Path(t.user_attrs["run_dir"])
        assert run.parent in folders and (run / "adapter_final" / "model.safetensors").is_file()
        assert t.user_attrs["worker"].rsplit(":", 1)[1] in pids[run.parent.name], (t.number, run)

    # Workers wait for each other, so both folders end with the whole study's summary.
    best = [json.loads((f / "best_params.json").read_text()) for f in folders]
    assert best[0] == json.loads(outputs["machine-a"][0])
    for summary in best:
        assert summary["trials"]["counted"] == summary["trials"]["complete"] == n
        assert summary["trial"] == best[0]["trial"] and summary["storage"].startswith("postgresql+")
        assert ":***@127.0.0.1" in summary["storage"]

    # The password is in no file of either study folder and in nothing the commands printed.
    for f in folders:
        for file in f.rglob("*"):
            if file.is_file():
                assert PG_PASSWORD.encode() not in file.read_bytes(), file
    for out, err in outputs.values():
        assert PG_PASSWORD not in out and PG_PASSWORD not in err


@pytest.mark.postgres
def test_the_password_can_come_from_pgpassword_instead_of_the_url(postgres_url, monkeypatch, tmp_path):
    from geodistill.config import Config
    from geodistill.tune import open_study

    no_password = postgres_url.replace(f":{PG_PASSWORD}@", "@")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    with pytest.raises(GeodistillError, match="cannot open it"):
        open_study(Config(), no_password, "pgpassword", 1)
    monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)  # libpq reads it: the password stays off the command line
    study = open_study(Config(), no_password, "pgpassword", 1)
    assert study.study_name == "pgpassword" and study.trials == []


@pytest.mark.postgres
def test_workers_starting_together_on_an_empty_database_all_open_the_study(postgres_url):
    from concurrent.futures import ThreadPoolExecutor

    import sqlalchemy

    from geodistill.config import Config
    from geodistill.tune import open_study

    server, _ = postgres_url.rsplit("/", 1)
    engine = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("CREATE DATABASE fresh_race"))
    engine.dispose()
    # Each opener creates Optuna's tables if missing: concurrent creators collide inside PostgreSQL.
    with ThreadPoolExecutor(6) as pool:
        studies = list(pool.map(lambda _: open_study(Config(), f"{server}/fresh_race", "race", 1), range(6)))
    assert {s._study_id for s in studies} == {studies[0]._study_id}
