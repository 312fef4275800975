"""Where training metrics go (``train.report_to``): TensorBoard, Weights & Biases, MLflow, or nowhere.

Every tracker gets the same names at the same steps: ``train/<part>`` (each loss part, ``lr``,
``grad_norm``, ...), ``val/wer``, ``val/wer_raw`` and ``time/step_seconds``. Only the main process logs.

- ``tensorboard``: event files in RUN/tb (extra ``tensorboard``). A resumed run drops the events that an
  interrupted attempt wrote at or after the step it resumes from.
- ``wandb``: offline unless ``WANDB_MODE`` says otherwise, into RUN/wandb (``wandb sync`` uploads it later);
  project ``WANDB_PROJECT`` or "geodistill" (extra ``track``).
- ``mlflow``: the store ``MLFLOW_TRACKING_URI`` names, else a SQLite store RUN/mlflow.db (extra ``track``).
  MLflow 3 keeps its plain file store in maintenance mode and refuses it unless told otherwise; SQLite is
  its local store now. Experiment ``MLFLOW_EXPERIMENT_NAME`` or "geodistill".

wandb and mlflow keep their run ids in RUN/trackers.json, so a resumed training continues the same tracker
run; they keep what an interrupted attempt logged after its last checkpoint (exact resume logs the same
values again at those steps).

Credentials stay in the environment (``WANDB_API_KEY``, ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``, a
password in ``MLFLOW_TRACKING_URI``) and are never written: the config has no field for them, a tracking
URI is shown with its password masked, a tracker's error message is scrubbed of every secret it could
quote, and neither tracker records git remotes (which can embed a token) or code.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from geodistill.config import Config, to_dict, tracker_names
from geodistill.errors import GeodistillError
from geodistill.optional import require
from geodistill.runfolder import RunFolder, read_json
from geodistill.train.outputs import flatten

log = logging.getLogger("geodistill")

EXTRA = "track"  # the pip extra with wandb and mlflow
PREFIXES = ("train", "val", "time")  # every metric name is "<prefix>/<name>"
# Environment variables whose values are secrets: scrubbed from any message a tracker raises.
SECRET_ENV = ("WANDB_API_KEY", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "DATABRICKS_TOKEN")
_URI_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s/:@]*):\S*@")  # greedy: up to the token's last "@"
_QUERY_SECRET = re.compile(r"(?i)([?&](?:ssl)?(?:password|passwd|pwd|token)=)[^&\s]*")


def mask_uri(text: str) -> str:
    """``text`` with every URI password (``scheme://user:***@host``) and password query value masked."""
    return _QUERY_SECRET.sub(r"\1***", _URI_PASSWORD.sub(r"\1:***@", text))


def scrub(text: str) -> str:
    """``text`` (a tracker's message) as it may be logged: URI passwords masked, every secret that the
    environment holds (``SECRET_ENV``, the tracking URI's password) replaced by ``***``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    userinfo = uri.partition("://")[2].rpartition("@")[0]
    secrets = [os.environ.get(name, "") for name in SECRET_ENV] + [userinfo.partition(":")[2]]
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return mask_uri(text)


class Tracker(Protocol):
    """One destination of the training metrics."""

    name: str

    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self, failed: bool = False) -> None: ...


class TensorBoard:
    name = "tensorboard"

    def __init__(self, log_dir: Path, purge_step: int | None):
        require("tensorboard", "tensorboard", "train.report_to: tensorboard")
        # Imported here: torch.utils.tensorboard imports tensorboard, which is optional.
        from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 (optional extra [tensorboard])

        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def close(self, failed: bool = False) -> None:
        self.writer.close()


class WandB:
    name = "wandb"

    def __init__(self, run_dir: Path, run_id: str | None, config: dict):
        wandb = require("wandb", EXTRA, "train.report_to: wandb")
        mode = os.environ.get("WANDB_MODE", "offline")
        settings = wandb.Settings(mode=mode, console="off", disable_git=True, save_code=False, silent=True)
        project = os.environ.get("WANDB_PROJECT", "geodistill")
        self.run = wandb.init(project=project, dir=str(run_dir), name=run_dir.name, id=run_id,
                              resume="allow", config=config, settings=settings)  # fmt: skip
        self.id = self.run.id
        # Our own step axis: wandb drops points logged below its last step, which a resume repeats.
        self.run.define_metric("step", hidden=True)
        for prefix in PREFIXES:
            self.run.define_metric(f"{prefix}/*", step_metric="step")
        log.info("wandb: %s run %s in %s", mode, self.id, run_dir / "wandb")

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log({**metrics, "step": step})

    def close(self, failed: bool = False) -> None:
        self.run.finish(exit_code=1 if failed else 0)


class MLflow:
    name = "mlflow"

    def __init__(self, run_dir: Path, run_id: str | None, config: dict):
        require("mlflow", EXTRA, "train.report_to: mlflow", package="mlflow-skinny")
        from mlflow.entities import Param  # noqa: PLC0415 (optional extra [track])
        from mlflow.tracking import MlflowClient  # noqa: PLC0415 (optional extra [track])

        local = not os.environ.get("MLFLOW_TRACKING_URI")
        uri = f"sqlite:///{(run_dir / 'mlflow.db').resolve()}" if local else os.environ["MLFLOW_TRACKING_URI"]
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "geodistill")
        found = self.client.get_experiment_by_name(name)
        artifacts = (run_dir / "mlflow-artifacts").resolve().as_uri() if local else None
        experiment = found.experiment_id if found else self.client.create_experiment(name, artifacts)
        if run_id is None:  # a fresh run: the config as flat params ("train.lr"), 100 per call (MLflow's cap)
            run_id = self.client.create_run(experiment, run_name=run_dir.name).info.run_id
            params = [Param(k, str(v)) for k, v in flatten(config).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(run_id, params=params[i : i + 100])
        else:  # resumed: params may not change in MLflow, so the first attempt's stay
            self.client.update_run(run_id, status="RUNNING")
        self.id = run_id
        log.info("mlflow: run %s in %s", run_id, mask_uri(uri))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric  # noqa: PLC0415 (optional extra [track]; imported by __init__)

        now = int(time.time() * 1000)
        rows = [Metric(key, float(value), now, step) for key, value in metrics.items()]
        self.client.log_batch(self.id, metrics=rows)

    def close(self, failed: bool = False) -> None:
        self.client.set_terminated(self.id, status="FAILED" if failed else "FINISHED")


class Trackers:
    """The configured trackers behind one ``log``. A tracker that fails while logging (a server gone) is
    dropped with one warning and training goes on: training_history.json keeps every value."""

    def __init__(self, trackers: list[Tracker]):
        self.active = list(trackers)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.active]

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for tracker in list(self.active):
            try:
                tracker.log(metrics, step)
            except Exception as exc:  # noqa: BLE001 -- any tracker failure; the run must go on
                self.active.remove(tracker)
                log.warning("%s: logging failed, no more metrics go to it (%s)", tracker.name, _why(exc))

    def close(self, failed: bool = False) -> None:
        """Close each tracker; ``failed``: the training raised or was stopped (MLflow marks the run
        FAILED, wandb gets exit code 1)."""
        for tracker in self.active:
            try:
                tracker.close(failed)
            except Exception as exc:  # noqa: BLE001 -- closing one must not keep the others open
                log.warning("%s: closing failed (%s)", tracker.name, _why(exc))
        self.active = []


def _why(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return scrub(f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__)


MODULES = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", EXTRA),
    "mlflow": ("mlflow", EXTRA),
}


def check_trackers(report_to: str | list[str]) -> None:
    """A one-line MissingDependencyError (with the pip command) for a configured tracker whose package is
    not installed: checked before the run is built, not after the teacher has loaded."""
    for name in tracker_names(report_to):
        module, extra = MODULES[name]
        require(
            module, extra, f"train.report_to: {name}", package="mlflow-skinny" if name == "mlflow" else None
        )


def open_trackers(cfg: Config, run_dir: Path, resumed_at: int | None, enabled: bool) -> Trackers:
    """The trackers ``cfg.train.report_to`` names, on ``run_dir`` (none when not ``enabled``: ranks other
    than the main one). ``resumed_at``: the step a resumed run continues from (None for a fresh run).
    A tracker that cannot start is a one-line GeodistillError, its secrets scrubbed."""
    if not enabled:
        return Trackers([])
    folder = RunFolder(run_dir)
    ids = read_json(folder.trackers_file, "tracker run ids") or {}
    opened: list[Tracker] = []
    try:
        for name in tracker_names(cfg.train.report_to):
            opened.append(_open(name, run_dir, resumed_at, ids.get(name), to_dict(cfg)))
    except Exception as exc:
        Trackers(opened).close(failed=True)
        if isinstance(exc, GeodistillError):
            raise
        raise GeodistillError(f"train.report_to: {name} could not start ({_why(exc)})") from None
    ids.update({t.name: t.id for t in opened if isinstance(t, WandB | MLflow)})
    if ids:
        folder.write_json(folder.trackers_file, ids)
    return Trackers(opened)


def _open(name: str, run_dir: Path, resumed_at: int | None, run_id: str | None, config: dict) -> Tracker:
    if name == "tensorboard":
        return TensorBoard(RunFolder(run_dir).tb, purge_step=resumed_at)
    if name == "wandb":
        return WandB(run_dir, run_id if resumed_at is not None else None, config)
    return MLflow(run_dir, run_id if resumed_at is not None else None, config)
