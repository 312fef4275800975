"""Tuning fixtures: a tiny study config (reusing the training tests' tiny teacher and manifests) and a
throwaway PostgreSQL server on loopback for the multi-worker test."""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import sqlalchemy
import yaml

from geodistill.config import load_config
from tests.train.conftest import tiny_data, tiny_teacher_dir  # noqa: F401  (fixtures shared with train tests)

PG_USER, PG_PASSWORD, PG_DB = "tuner", "s3cret-Pw", "geodistill_tune"


@pytest.fixture
def tune_config(tmp_path, tiny_teacher_dir, tiny_data):  # noqa: F811
    """Write a tiny study config; keyword sections are merged into the defaults below. Returns the YAML path.

    A trial is 2 optimiser steps with a validation after each (so a trial reports twice and can be pruned
    after its first report); the space has three float parameters.
    """

    def make(name: str = "study", **sections) -> Path:
        train, val = tiny_data
        cfg = {
            "teacher": str(tiny_teacher_dir),
            "student": {"init": "copy", "decoder_layers": 1, "lora": {"r": 4, "alpha": 8, "dropout": 0.1}},
            "loss": {"kl_weight": 0.5, "kl_warmup_steps": 1, "geo_weight": 0.5, "hidden_on": "decoder"},
            "data": {"train": str(train), "val": str(val), "val_limit": 2},
            "train": {
                "max_steps": 50,
                "warmup_steps": 0,
                "lr": 1e-3,
                "batch_size": 2,
                "grad_accum": 1,
                "eval_every": 1,
                "save_every": 1,
                "log_every": 1,
                "num_workers": 0,
                "seed": 3,
            },
            "tune": {
                "n_trials": 3,
                "steps": 2,
                "pruner_startup_trials": 5,
                "pruner_warmup_steps": 0,
                "space": {
                    "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                    "loss.kl_weight": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
                    "loss.temperature": {"type": "float", "low": 1.0, "high": 4.0},
                },
            },
            "run_dir": str(tmp_path / name),
        }
        for key, value in sections.items():
            cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


@pytest.fixture
def tune_cfg(tune_config):
    """Like tune_config, but returns the loaded Config."""
    return lambda name="study", **sections: load_config(tune_config(name, **sections))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(tool: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return found[-1] if found else shutil.which(tool)


def _run_as(user: str | None, cmd: list[str], **kw) -> subprocess.CompletedProcess:
    # initdb and postgres refuse to run as root: as root, run them as the packaged `postgres` user.
    if user is not None:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server in a temporary folder, on 127.0.0.1 and a free port, with a password-protected
    superuser and one database; yields its SQLAlchemy URL and stops and deletes it afterwards."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    driver = next((d for d in ("psycopg", "psycopg2") if importlib.util.find_spec(d)), None)
    if driver is None:
        pytest.skip("no PostgreSQL driver installed (pip install 'psycopg[binary]')")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run the server as")
        user = "postgres"
    root = Path(tempfile.mkdtemp(prefix="geodistill-pg-"))  # not under pytest's 0700 root-owned tmp tree
    data, pwfile, port = root / "data", root / "pw", _free_port()
    pwfile.write_text(PG_PASSWORD + "\n")
    if user is not None:
        shutil.chown(root, user)
        shutil.chown(pwfile, user)
    made = _run_as(
        user,
        [
            initdb,
            "-D",
            str(data),
            "-U",
            PG_USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ],
    )
    if made.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {made.stderr.strip()[-300:]}")
    opts = f"-k {root} -p {port} -h 127.0.0.1 -c fsync=off -c max_connections=50"
    started = _run_as(
        user, [pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "-t", "60", "start"]
    )
    if started.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else started.stderr
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {log.strip()[-300:]}")
    try:
        server = f"postgresql+{driver}://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{port}"
        engine = sqlalchemy.create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f"CREATE DATABASE {PG_DB}"))
        engine.dispose()
        yield f"{server}/{PG_DB}"
    finally:
        _run_as(user, [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])
        time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)
