"""Issue "Hardening 2", item 1: a storage password must never reach the disk, nor any message.

While ``geodistill tune --storage postgresql+psycopg://atk:SECRET@127.0.0.1:5499/db`` ran, the study
folder's lock record (``.geodistill.lock.json``, mode 0644) held the whole command line, the URL and its
password included, and a kill -9 left it there. A password with an unescaped ``@`` also leaked its tail
in the masked URL (``atk:***@LEAKPART@127.0.0.1``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url

import geodistill.train.loop as loop
from geodistill.config import Config
from geodistill.errors import GeodistillError
from geodistill.runlock import HOLDER, hold
from geodistill.tune import StudyRunner, mask_url, open_study, write_outputs
from geodistill.tune.storage import check_url
from tests.tune.conftest import PG_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
URL = "postgresql+psycopg://atk:SECRET@127.0.0.1:5499/db"
# Passwords SQLAlchemy or urllib would split at an unescaped "@", ":" or "/": no piece may show.
PASSWORDS = [
    "SECRET@LEAKPART",
    "SECRET:LEAKPART",
    "SECRET/LEAKPART",
    "Alpha@Bravo:Charlie/Delta",
    "Alpha/Bravo@Charlie",
    "Alpha:Bravo@Charlie@Delta",
]


def pieces(password: str) -> list[str]:
    return [p for p in re.split(r"[@:/]", password) if p]


def files_holding(folder: Path, *secrets: str) -> list[str]:
    """Every file under ``folder`` that holds one of ``secrets``, as "path: secret"."""
    return [
        f"{path}: {secret}"
        for path in folder.rglob("*")
        if path.is_file()
        for secret in secrets
        if secret.encode() in path.read_bytes()
    ]


def assert_owner_only(path: Path) -> None:
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, oct(path.stat().st_mode)


def test_item1_the_lock_record_holds_no_command_line_and_is_owner_only(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["geodistill", "tune", "--storage", URL, "--workers", "2"])
    with hold(tmp_path / "study", "geodistill tune") as folder:
        text = (folder / HOLDER).read_text()
        record = json.loads(text)
        assert sorted(record) == ["command", "host", "pid", "since"]  # no argv
        assert record["command"] == "geodistill tune" and record["pid"] == os.getpid()
        assert "SECRET" not in text and "postgresql" not in text
        assert_owner_only(folder / HOLDER)
        assert [p.name for p in folder.iterdir() if "tmp" in p.name] == []  # the atomic write left nothing


def test_item1_a_lock_record_left_by_kill_9_holds_no_password(tmp_path):
    folder = tmp_path / "study"
    code = (
        "import sys, time\nfrom geodistill.runlock import hold\n"
        f"with hold({str(folder)!r}, 'geodistill tune'):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    # The URL is on the holder's command line, as on `geodistill tune --storage URL`.
    argv = [sys.executable, "-c", code, "tune", "--storage", URL]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "held"
    finally:
        child.kill()  # kill -9: nothing is cleaned up, the record stays
        child.wait()
    assert str(child.pid) in (folder / HOLDER).read_text()
    assert files_holding(folder, "SECRET", "postgresql") == []
    assert_owner_only(folder / HOLDER)
    with hold(folder, "geodistill tune"):  # the next run takes the folder over, record and all
        assert_owner_only(folder / HOLDER)


def test_item1_a_stale_record_from_an_older_version_is_replaced_owner_only(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / HOLDER).write_text(json.dumps({"pid": 1, "argv": ["--storage", URL]}))
    os.chmod(folder / HOLDER, 0o644)
    with hold(folder, "geodistill tune"):
        assert "SECRET" not in (folder / HOLDER).read_text()
        assert_owner_only(folder / HOLDER)


@pytest.mark.parametrize("password", PASSWORDS)
def test_item1_mask_url_hides_every_piece_of_a_password(password):
    shown = mask_url(f"postgresql+psycopg://atk:{password}@127.0.0.1:5499/db")
    assert shown == "postgresql+psycopg://atk:***@127.0.0.1:5499/db"


@pytest.mark.parametrize("password", PASSWORDS)
def test_item1_mask_url_hides_a_password_given_as_a_query_parameter(password):
    shown = mask_url(f"postgresql://atk@db.example/optuna?sslmode=require&password={password}")
    assert shown.endswith("password=***&sslmode=require") or shown.endswith("password=***"), shown
    assert [p for p in pieces(password) if p in shown] == [], shown


def test_item1_mask_url_keeps_ordinary_urls_as_before():
    # study.json records the masked URL: an existing study folder must still recognise its storage.
    for url in (
        "postgresql://tuner:s3cret@db.example:5432/optuna",
        "postgresql://tuner:se%40cret@db/optuna?b=1&a=2",
        "postgresql+psycopg://tuner@db/optuna",
        "mysql+pymysql://tuner:pw@[::1]:3306/optuna",
        "sqlite:////tmp/x@y:z/optuna.db",
    ):
        assert mask_url(url) == make_url(url).render_as_string(hide_password=True)
    assert mask_url("postgresql://tuner:s3cret@db.example:5432/optuna") == (
        "postgresql://tuner:***@db.example:5432/optuna"
    )
    assert mask_url("not a url SECRET") == "<unparsable storage URL>"


@pytest.mark.parametrize("password", PASSWORDS)
def test_item1_an_unparsable_url_is_named_without_the_password(password):
    with pytest.raises(GeodistillError) as err:
        check_url(f"postgresql://atk:{password}@127.0.0.1:54x9/db")
    text = str(err.value)
    assert "port '54x9' is not a number" in text and "atk:***@127.0.0.1:54x9" in text
    assert [p for p in pieces(password) if p in text] == [], text


@pytest.mark.parametrize("password", PASSWORDS)
def test_item1_a_driver_error_shows_no_piece_of_the_password(password):
    pytest.importorskip("psycopg")
    # Port 9 on loopback has no server. SQLAlchemy ends the password at its first "@", so the driver would
    # look up a host named after the password's tail ("failed to resolve host 'LEAKPART@127.0.0.1'"):
    # such a URL is refused before any connection, with the way to write it.
    with pytest.raises(GeodistillError) as err:
        open_study(Config(), f"postgresql+psycopg://atk:{password}@127.0.0.1:9/db", "leak", 1)
    text = str(err.value)
    assert "atk:***@127.0.0.1:9/db" in text
    assert ("%40" in text) if "@" in password else ("cannot open it" in text), text
    assert [p for p in pieces(password) if p in text] == [], text


def test_item1_a_percent_encoded_password_is_accepted_and_hidden(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert open_study(Config(), url, "plain", 1).study_name == "plain"  # check_url lets a sound URL through
    pytest.importorskip("psycopg")
    with pytest.raises(GeodistillError, match="cannot open it") as err:
        open_study(Config(), "postgresql+psycopg://atk:SE%40CRET@127.0.0.1:9/db", "encoded", 1)
    assert "SE%40CRET" not in str(err.value) and "SE@CRET" not in str(err.value)


def test_item1_no_file_of_the_study_folder_holds_the_password(tmp_path, monkeypatch):
    """Every file tune and ablate write in the study folder, written with a password-protected URL on the
    command line (as `geodistill tune --storage URL` runs): the lock record, tune.log, study.json,
    best_params.json, trials.csv, ablation.json/.md/.png."""
    from geodistill.ablate.outputs import write_ablation

    password = "Zq7Secret@Zq7Leak:Zq7Part/Zq7Tail"
    url = f"postgresql+psycopg://atk:{password}@127.0.0.1:5499/db"
    monkeypatch.setattr(sys, "argv", ["geodistill", "tune", "--storage", url])
    cfg = Config(run_dir=str(tmp_path / "study"))
    runner = StudyRunner(cfg, url, None, command="tune")
    study = optuna.create_study(study_name=runner.name)  # in memory: the writers only read it
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    with runner.session():
        runner.claim()
        logging.getLogger("geodistill.tune").info("study on %s", runner.label)
        write_outputs(study, runner.study_dir, runner.label)
        write_ablation(study, runner.cfg, runner.study_dir, runner.label)
        written = sorted(p.name for p in runner.study_dir.iterdir())
        assert {HOLDER, "tune.log", "study.json", "best_params.json", "trials.csv", "ablation.json"} <= set(
            written
        )
        assert files_holding(runner.study_dir, password, *pieces(password)) == []
    assert json.loads((runner.study_dir / "study.json").read_text())["storage"] == runner.label
    assert runner.label == "postgresql+psycopg://atk:***@127.0.0.1:5499/db"
    assert files_holding(runner.study_dir, password, *pieces(password)) == []


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("command", ["tune", "ablate"])
def test_item1_no_file_holds_the_password_while_and_after_a_study_runs(
    command, tune_cfg, postgres_url, monkeypatch
):
    """A real one-trial study on PostgreSQL, the URL on the command line: the folder is searched while the
    trial trains (lock record in place) and after."""
    from geodistill.ablate import ablate
    from geodistill.tune import tune

    monkeypatch.setattr(sys, "argv", ["geodistill", command, "--storage", postgres_url])
    cfg = tune_cfg(command, tune={"n_trials": 1})
    cfg.ablate.run, cfg.ablate.seeds = ["ce"], 1
    folder = Path(cfg.run_dir)
    real_train = loop.train
    seen = []

    def searching_train(trial_cfg, **kwargs):
        seen.append(files_holding(folder, PG_PASSWORD))
        assert (folder / HOLDER).is_file()
        assert_owner_only(folder / HOLDER)
        return real_train(trial_cfg, **kwargs)

    monkeypatch.setattr(loop, "train", searching_train)
    if command == "tune":
        summary = tune(cfg, storage=postgres_url, study_name="password-tune")
    else:
        summary = ablate(cfg, storage=postgres_url, study_name="password-ablate")
    assert seen == [[]]  # one trial ran, and no file held the password while it did
    assert ":***@127.0.0.1" in summary["storage"]
    assert files_holding(folder, PG_PASSWORD) == []
