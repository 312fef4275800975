"""A run folder's layout, in one place: what training writes there and what everything else reads back.

    run/
      tb/                      TensorBoard events (train.report_to: tensorboard, the default)
      wandb/, mlflow.db        Weights & Biases offline runs, the MLflow store (report_to: wandb, mlflow)
      trackers.json            the wandb / mlflow run ids, so a resumed run continues the same one
      checkpoint.pt            latest full training state (atomic), for exact resume
      training_config.json     resolved config + package versions + git commit
      training_history.json    train loss parts per log step, validation WER, skipped steps
      best/                    student at the best validation WER
      adapter_final/           final student (HF Whisper with adapters merged, or a CTC student's folder)
      bad_samples.jsonl        skipped samples with reasons
      train.log
      eval-*/eval.json         evaluations written into the run (`geodistill evaluate --out RUN/eval-x`)
      .geodistill.lock(.json)  held while a process trains here (geodistill.runlock)

Every JSON file is read one way (``read_json``): a missing file is None (the caller says whether that is
fine), an unreadable or malformed one is a one-line GeodistillError naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from geodistill.errors import GeodistillError

CHECKPOINT = "checkpoint.pt"
RECORD = "training_config.json"
HISTORY = "training_history.json"
BEST, FINAL = "best", "adapter_final"
STUDENT_DIRS = (BEST, FINAL)  # where a run keeps its student, in order of preference
MARKERS = (RECORD, CHECKPOINT)  # files that make a folder a geodistill run


def read_json(path: Path, what: str, error: type[GeodistillError] = GeodistillError) -> dict | None:
    """The JSON object in ``path``; None when the file does not exist; a one-line ``error`` naming the
    file when it cannot be read or holds no JSON object."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"{path}: unreadable {what} ({exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: {what} is not a JSON object")
    return data


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def final(self) -> Path:
        return self.path / FINAL

    @property
    def record_file(self) -> Path:
        return self.path / RECORD

    @property
    def history_file(self) -> Path:
        return self.path / HISTORY

    @property
    def bad_samples(self) -> Path:
        return self.path / "bad_samples.jsonl"

    @property
    def tb(self) -> Path:
        return self.path / "tb"

    @property
    def trackers_file(self) -> Path:
        return self.path / "trackers.json"

    def is_run(self) -> bool:
        """Whether the folder is a geodistill run (it holds a training record or a checkpoint)."""
        return self.path.is_dir() and any((self.path / m).exists() for m in MARKERS)

    def student(self, holds_model: Callable[[Path], bool]) -> Path | None:
        """The run's student: the first of best/, adapter_final/ for which ``holds_model`` says yes."""
        return next((self.path / s for s in STUDENT_DIRS if holds_model(self.path / s)), None)

    def record(self) -> dict | None:
        """training_config.json: {"config", "versions", "git_commit"}, or None before training starts."""
        return read_json(self.record_file, "run configuration")

    def history(self) -> dict | None:
        """training_history.json: {"train", "val", "skipped"}, or None before the first log step."""
        return read_json(self.history_file, "training history")

    def evals(self) -> list[tuple[Path, dict]]:
        """(file, eval.json) of the run's evaluations (in the run folder or one folder down), newest first."""
        found = [p for p in [self.path / "eval.json", *self.path.glob("*/eval.json")] if p.is_file()]
        newest = sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
        return [(p, data) for p in newest if (data := read_json(p, "evaluation")) is not None]

    def write_json(self, path: Path, data: dict, indent: int = 2) -> None:
        """Write one of the run's JSON files (``path`` inside the folder)."""
        path.write_text(json.dumps(data, indent=indent), encoding="utf-8")
