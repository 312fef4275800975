"""Data parallel under torchrun (gloo on CPU): 2 ranks x 1 batch == 1 process x 2 accumulated batches."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geodistill.config import load_config
from tests.train.test_resume import student_tensors


@pytest.mark.slow
def test_two_ranks_match_gradient_accumulation(make_config):
    no_dropout = {"init": "copy", "decoder_layers": 1, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    single = make_config(
        "single", student=no_dropout, train={"grad_accum": 2, "max_steps": 4, "eval_every": 0}
    )
    ddp = make_config("ddp", student=no_dropout, train={"grad_accum": 1, "max_steps": 4, "eval_every": 0})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    for config, launch in (
        (single, [sys.executable, "-m"]),
        (ddp, [torchrun, "--standalone", "--nproc-per-node", "2", "-m"]),
    ):
        proc = subprocess.run(
            [*launch, "geodistill.cli", "train", "--config", str(config)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a = student_tensors(Path(load_config(single).run_dir))
    b = student_tensors(Path(load_config(ddp).run_dir))
    changed = 0
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-5, rtol=1e-4), name
        changed += "lora" in name or "proj" in name
    assert changed
