"""Read what a finished (or interrupted) run folder records: config, history, evaluations, bad samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from geodistill import runfolder
from geodistill.config import Config, ConfigError, from_dict
from geodistill.errors import GeodistillError
from geodistill.models.loading import RUN_SUBDIRS, holds_model
from geodistill.runfolder import RunFolder

EVAL_DIRS = {"teacher": "eval-teacher", "student": "eval-student"}  # written by `geodistill evaluate --out`


@dataclass(frozen=True)
class RunInfo:
    run_dir: Path  # the run folder
    record: dict  # training_config.json: {"config", "versions", "git_commit"}
    cfg: Config  # record["config"] as dataclasses
    history: dict  # training_history.json: {"train": [...], "val": [...], "skipped": [...]}
    student_dir: Path  # best/ if it holds a model, else adapter_final/ (the student a run-folder spec loads)
    bad_samples: int  # lines of bad_samples.jsonl (0 when the file is absent)
    missing: tuple[dict, ...] = ()  # files the report does without: {"file", "what", "effect"}

    @property
    def has_history(self) -> bool:
        return not any(m["file"] == str(self.run_dir / runfolder.HISTORY) for m in self.missing)


def read_json(path: Path, what: str) -> dict:
    """A JSON object from ``path`` (``geodistill.runfolder.read_json``), which the report needs: missing is
    a one-line GeodistillError too."""
    data = runfolder.read_json(path, what)
    if data is None:
        raise GeodistillError(f"{path}: missing ({what})")
    return data


def count_lines(path: Path) -> int:
    """Non-empty lines of a text file; 0 when it does not exist."""
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8", errors="replace") as f:
        return sum(1 for line in f if line.strip())


def _student_dir(run_dir: Path) -> Path:
    found = RunFolder(run_dir).student(holds_model)
    if found is None:
        raise GeodistillError(
            f"{run_dir}: no saved student ({' or '.join(f'{s}/' for s in RUN_SUBDIRS)} holding a model)"
        )
    return found


def read_run(run_dir: str | Path) -> RunInfo:
    """What the report needs from ``run_dir``, checked; a GeodistillError names whatever is missing that the
    report cannot do without (the run's configuration, its student). A missing training history is listed
    in ``missing``: the report is built without its curves and numbers."""
    run_dir = Path(run_dir).expanduser()
    if not run_dir.is_dir():
        raise GeodistillError(f"{run_dir}: not a folder (expected a geodistill run folder)")
    folder = RunFolder(run_dir)
    record = read_json(folder.record_file, "run configuration")
    if not isinstance(record.get("config"), dict):
        raise GeodistillError(f"{run_dir / 'training_config.json'}: no 'config' mapping")
    try:
        cfg = from_dict(record["config"])
    except ConfigError as exc:
        reason = str(exc).replace("\n", " ")
        raise GeodistillError(f"{run_dir / 'training_config.json'}: {reason}") from None
    missing: list[dict] = []
    history = runfolder.read_json(folder.history_file, "training history")
    if history is None:  # a run killed before its first checkpoint, or a student folder copied elsewhere
        effect = "no training curves and no training numbers"
        missing.append({"file": str(folder.history_file), "what": "training history", "effect": effect})
        history = {}
    for key in ("train", "val"):
        if not isinstance(history.get(key, []), list):
            raise GeodistillError(f"{run_dir / 'training_history.json'}: '{key}' is not a list")
    history = {
        "train": history.get("train", []),
        "val": history.get("val", []),
        "skipped": history.get("skipped", []),
    }
    return RunInfo(
        run_dir=run_dir,
        record=record,
        cfg=cfg,
        history=history,
        student_dir=_student_dir(run_dir),
        bad_samples=count_lines(folder.bad_samples),
        missing=tuple(missing),
    )


def read_evals(run_dir: Path) -> dict[str, dict]:
    """{"teacher": eval.json, "student": eval.json} for those of RUN_DIR/eval-*/eval.json that exist."""
    found = {}
    for role, sub in EVAL_DIRS.items():
        path = run_dir / sub / "eval.json"
        if path.is_file():
            found[role] = read_json(path, f"{role} evaluation")
    return found
