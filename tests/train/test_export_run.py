"""A run the real loop trained exports to CTranslate2, and the weights read back are the student's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geodistill.config import load_config
from geodistill.export import export
from geodistill.models import load_whisper
from geodistill.models.ct2 import ct2_state_dict, read_ct2, whisper_dims
from geodistill.train.loop import train

pytest.importorskip("ctranslate2")


def test_trained_run_exports_to_ct2_with_the_best_students_weights(make_config, tmp_path):
    cfg = load_config(make_config("ship", train={"max_steps": 3, "eval_every": 3, "save_every": 3}))
    assert train(cfg).exit_code == 0
    out = export(cfg.run_dir, "ct2", tmp_path / "ct2", quantization="float32")
    variables, aliases = read_ct2(Path(out) / "model.bin")
    back = ct2_state_dict(variables, aliases, whisper_dims(variables, aliases, str(out)), str(out))
    student = load_whisper(str(Path(cfg.run_dir) / "best"))[0].state_dict()
    assert set(back) == set(student) and all(torch.equal(back[k], student[k]) for k in back)
    card = (Path(out) / "README.md").read_text()
    assert "library_name: ctranslate2" in card and "steps: 3" in card
