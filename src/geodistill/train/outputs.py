"""The run folder's files besides the checkpoint: config record, logs, saved students.

run/
  tb/                      TensorBoard events
  checkpoint.pt            latest full training state (atomic), for exact resume
  training_config.json     resolved config + package versions + git commit
  training_history.json    train loss parts per log step, validation WER, skipped steps
  best/                    student at the best validation WER (plain HF Whisper + processor)
  adapter_final/           final student: HF Whisper (adapters merged), adapter/ (peft), projector
  bad_samples.jsonl        skipped samples with reasons
  train.log
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import subprocess
from pathlib import Path

from safetensors.torch import save_file

from geodistill.config import Config, to_dict
from geodistill.errors import GeodistillError
from geodistill.versions import package_versions

log = logging.getLogger("geodistill")

# Changing these on resume would make the checkpoint describe a different model or data order.
INCOMPATIBLE = (
    "teacher",
    "student",
    "loss.hidden_loss",
    "loss.hidden_on",
    "train.batch_size",
    "train.grad_accum",
    "train.seed",
    "data.train",
    "data.val",
    "teacher_cache",
)


def setup_logging(run_dir: Path) -> None:
    logger = logging.getLogger("geodistill")
    logger.setLevel(logging.INFO)
    target = str((run_dir / "train.log").resolve())
    if not any(getattr(h, "baseFilename", None) == target for h in logger.handlers):
        for h in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(h)
            h.close()
        fh = logging.FileHandler(target)
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(fh)
    if not any(type(h) is logging.StreamHandler for h in logger.handlers):
        logger.addHandler(logging.StreamHandler())


def _git_commit() -> str | None:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_config(cfg: Config, run_dir: Path) -> None:
    record = {"config": to_dict(cfg), "versions": package_versions(), "git_commit": _git_commit()}
    (run_dir / "training_config.json").write_text(json.dumps(record, indent=2))


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resumed_config(cfg: Config, run_dir: Path) -> None:
    """Warn about changed settings on resume; refuse changes that make the checkpoint meaningless."""
    path = run_dir / "training_config.json"
    if not path.exists():
        return
    old, new = _flatten(json.loads(path.read_text())["config"]), _flatten(to_dict(cfg))
    diffs = sorted(
        k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and not k.startswith("tune.")
    )
    if not diffs:
        return
    lines = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diffs]
    fatal = [line for k, line in zip(diffs, lines, strict=True) if k.startswith(INCOMPATIBLE)]
    if fatal:
        raise GeodistillError(
            f"{run_dir}: cannot resume with a changed {'; '.join(fatal)} "
            "(use a new run_dir, or restore the old values)"
        )
    log.warning("resuming with changed settings: %s", "; ".join(lines))


def save_student(run, out: Path, extra: dict | None = None) -> None:
    """Save the student as a plain HF Whisper (adapters merged) + processor + projector + peft adapter.

    Written into a temp folder and swapped in, so a crash never leaves a half-written student.
    """
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model = run.student
    if hasattr(model, "merge_and_unload"):  # peft: keep the adapter alone too, then merge a copy
        model.save_pretrained(str(tmp / "adapter"))
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(str(tmp))
    run.processor.save_pretrained(str(tmp))
    if len(run.projectors):
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in run.projectors.state_dict().items()},
            str(tmp / "projector.safetensors"),
        )
    (tmp / "geodistill.json").write_text(json.dumps({"teacher": run.cfg.teacher, **(extra or {})}, indent=2))
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
