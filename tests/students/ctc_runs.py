"""Tiny CTC students on disk for the command tests (evaluate, transcribe, export, report).

Import the fixtures into a conftest (with ``tiny_teacher_dir`` and ``tiny_data`` from tests.train.conftest).
- ``tiny_ctc_run``: a finished 4-step run of the real loop: best/ and adapter_final/, history, projector;
- ``random_ctc_dir``: an untrained, randomly initialised student saved by ``CTCStudent.save``, whose greedy
  transcripts are non-empty (a briefly trained model emits mostly blanks, which would make text checks
  pass trivially).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geodistill.config import load_config
from geodistill.students.ctc.model import CTCModel, CTCShape, CTCStudent
from geodistill.train.loop import train
from tests.train.conftest import four_step_config

SHAPE = CTCShape(n_mels=80, d_model=24, layers=2, heads=2, ffn=48, dropout=0.0)


def ctc_run_config(run_dir: Path, teacher: Path, train_spec: Path, val_spec: Path, **ctc) -> Path:
    """A 4-step CTC run, 2 validations: d 24 (the teacher has 32, so a projector 24 -> 32 trains)."""
    student = {"init": "ctc", "ctc": {"d_model": 24, "layers": 2, "heads": 2, "ffn": 48, **ctc}}
    loss = {"kl_weight": 0.0, "geo_weight": 0.5, "hidden_on": "encoder"}
    return four_step_config(run_dir, teacher, train_spec, val_spec, student, loss)


@pytest.fixture(scope="session")
def tiny_ctc_run(tmp_path_factory, tiny_teacher_dir, tiny_data) -> Path:
    train_spec, val_spec = tiny_data
    run_dir = tmp_path_factory.mktemp("ctc-run") / "run"
    result = train(load_config(ctc_run_config(run_dir, tiny_teacher_dir, train_spec, val_spec)))
    assert result.exit_code == 0 and (run_dir / "adapter_final" / "ctc_config.json").is_file()
    return run_dir


@pytest.fixture(scope="session")
def random_ctc_dir(tmp_path_factory, tiny_processor) -> Path:
    folder = tmp_path_factory.mktemp("ctc-random") / "student"
    torch.manual_seed(0)
    CTCStudent(CTCModel(SHAPE).eval(), tiny_processor, torch.nn.ModuleDict(), "tiny").save(folder)
    return folder
