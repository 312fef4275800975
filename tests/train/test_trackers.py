"""train.report_to: TensorBoard, wandb (offline) and MLflow (a SQLite store in the run folder) get the same
metric names from a real tiny run; none needs no tracker package; credentials never reach the run folder."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from geodistill.config import ConfigError, load_config, tracker_names
from geodistill.errors import GeodistillError
from geodistill.optional import MissingDependencyError
from geodistill.train import trackers
from geodistill.train.loop import train

SHORT = {"max_steps": 2, "eval_every": 0, "save_every": 2}  # two steps, one validation at the end
SECRET = "s3cr3t-Pa55"


def _tb_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _mlflow_metrics(run_dir: Path) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    """(run id, metric -> [(step, value)]) of the one run in the run folder's MLflow store."""
    from mlflow.tracking import MlflowClient

    run_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    history = {
        k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in run.data.metrics
    }
    return run_id, history


def test_report_to_parses_and_bad_values_are_one_line(make_config):
    assert tracker_names("none") == [] and tracker_names(["wandb", "mlflow"]) == ["wandb", "mlflow"]
    assert load_config(make_config()).train.report_to == ["tensorboard"]  # the default
    assert load_config(make_config(), ["train.report_to=mlflow"]).train.report_to == "mlflow"
    for value, says in (
        (
            "comet",
            r"train.report_to: unknown tracker 'comet' \(choose from tensorboard, wandb, mlflow, or none\)",
        ),
        ("[none, wandb]", "'none' turns logging off"),
        ("[wandb, wandb]", "listed twice"),
    ):
        with pytest.raises(ConfigError, match=says):
            load_config(make_config(), [f"train.report_to={value}"])


def test_report_to_none_trains_without_any_tracker_package(make_config, monkeypatch):
    for name in ("tensorboard", "wandb", "mlflow"):  # an import of any of them now fails
        monkeypatch.setitem(sys.modules, name, None)
    cfg = load_config(make_config("quiet", train={**SHORT, "report_to": "none"}))
    assert train(cfg).exit_code == 0
    run = Path(cfg.run_dir)
    assert not any((run / name).exists() for name in ("tb", "wandb", "mlflow.db", "trackers.json"))
    assert json.loads((run / "training_history.json").read_text())["val"]  # the history is still kept


def test_missing_tracker_package_is_one_line_before_the_run_is_built(make_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    cfg = load_config(make_config("nomlflow", train={**SHORT, "report_to": ["tensorboard", "mlflow"]}))
    with pytest.raises(
        MissingDependencyError, match=r"needs the 'mlflow-skinny' package: pip install 'geodistill\[track\]'"
    ):
        train(cfg)
    assert not (Path(cfg.run_dir) / "tb").exists()  # refused before anything was opened


def test_every_tracker_gets_the_same_metrics_and_no_credential(make_config, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    for name in ("WANDB_API_KEY", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, SECRET)
    for name in ("WANDB_MODE", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    cfg = load_config(make_config("all", train={**SHORT, "report_to": ["tensorboard", "wandb", "mlflow"]}))
    assert train(cfg).exit_code == 0
    run = Path(cfg.run_dir)
    history = json.loads((run / "training_history.json").read_text())

    tb = _tb_scalars(run / "tb")
    run_id, ml = _mlflow_metrics(run)
    assert set(tb) == set(ml)  # the same names in each
    expected = {f"train/{k}" for k in history["train"][0] if k != "step"} | {"val/wer", "val/wer_raw"}
    assert expected | {"time/step_seconds"} == set(ml)
    for entry in history["train"]:  # the training's own values (the history rounds to 8 places)
        for key, value in entry.items():
            if key != "step":
                assert (entry["step"], pytest.approx(value, abs=1e-8)) in ml[f"train/{key}"]
    assert ml["val/wer"] == [(2, pytest.approx(history["val"][-1]["wer"]))]
    assert [s for s, _ in ml["time/step_seconds"]] == [1, 2]

    offline = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1
    recorded = offline[0].read_bytes()
    assert all(name.encode() in recorded for name in tb)  # wandb's offline record names them too

    leaked = [p for p in run.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaked == []

    # A resumed training continues the same MLflow run (its id kept in trackers.json).
    more = load_config(make_config("all", train={**SHORT, "max_steps": 3, "report_to": ["mlflow"]}))
    assert train(more).exit_code == 0
    again, ml = _mlflow_metrics(run)
    assert again == run_id and [s for s, _ in ml["time/step_seconds"]] == [1, 2, 3]


def test_a_tracking_uri_password_never_reaches_the_log(make_config, monkeypatch):
    pytest.importorskip("mlflow")
    # Nothing listens on the discard port: the client fails at once (no retries), quoting the URI.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{SECRET}@127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    cfg = load_config(make_config("remote", train={**SHORT, "report_to": "mlflow"}))
    with pytest.raises(GeodistillError, match="train.report_to: mlflow could not start") as err:
        train(cfg)
    assert SECRET not in str(err.value) and "\n" not in str(err.value)
    run = Path(cfg.run_dir)
    assert not [p for p in run.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def test_masking_and_scrubbing(monkeypatch):
    assert trackers.mask_uri("http://bob:p@ss@host:5000/x?a=1") == "http://bob:***@host:5000/x?a=1"
    assert trackers.mask_uri("postgresql://u@h/db?password=pw&x=1") == "postgresql://u@h/db?password=***&x=1"
    assert trackers.mask_uri("sqlite:////tmp/run/mlflow.db") == "sqlite:////tmp/run/mlflow.db"
    monkeypatch.setenv("WANDB_API_KEY", "k3y")
    assert trackers.scrub("401: key k3y rejected") == "401: key *** rejected"


class _Broken:
    name = "broken"

    def log(self, metrics, step):
        raise ConnectionError(f"POST http://u:{SECRET}@host/api failed")

    def close(self, failed=False):
        raise AssertionError("a dropped tracker is not closed again")


class _Kept:
    name = "kept"

    def __init__(self):
        self.rows, self.closed = [], None

    def log(self, metrics, step):
        self.rows.append((step, dict(metrics)))

    def close(self, failed=False):
        self.closed = "failed" if failed else "finished"


def test_a_tracker_that_fails_mid_run_is_dropped_with_one_scrubbed_warning(caplog):
    kept = _Kept()
    group = trackers.Trackers([_Broken(), kept])
    with caplog.at_level(logging.WARNING, logger="geodistill"):
        group.log({"train/total": 1.0}, 1)
        group.log({"train/total": 0.5}, 2)
    assert group.names == ["kept"] and kept.rows == [(1, {"train/total": 1.0}), (2, {"train/total": 0.5})]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "broken: logging failed" in warnings[0] and SECRET not in warnings[0]
    group.close(failed=True)
    assert kept.closed == "failed"


def test_tensorboard_purges_what_an_interrupted_attempt_wrote_after_the_resume_step(tmp_path):
    pytest.importorskip("tensorboard")
    first = trackers.TensorBoard(tmp_path / "tb", purge_step=None)
    for step in range(4):
        first.log({"train/loss": float(step)}, step)
    first.close()
    resumed = trackers.TensorBoard(tmp_path / "tb", purge_step=2)  # resumed after step 2: 2, 3 redone
    resumed.log({"train/loss": 20.0}, 2)
    resumed.close()
    assert _tb_scalars(tmp_path / "tb")["train/loss"] == [(0, 0.0), (1, 1.0), (2, 20.0)]
