"""CUDA AMP paths (fp16 + GradScaler, bf16): run where a GPU exists, skipped cleanly elsewhere (CI)."""

from __future__ import annotations

import pytest
import torch

from geodistill.config import load_config
from geodistill.train.loop import train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_amp_training_on_cuda(make_config, amp):
    cfg = load_config(
        make_config(f"amp-{amp}", train={"amp": amp, "device": "cuda", "max_steps": 4, "eval_every": 0})
    )
    result = train(cfg)
    assert result.exit_code == 0 and result.step == 4
    losses = [e["total"] for e in result.history["train"]]
    assert all(torch.isfinite(torch.tensor(losses)))
    saved = torch.load(cfg.run_dir + "/checkpoint.pt", weights_only=True)
    assert bool(saved["scaler"]) == (amp == "fp16")  # GradScaler state only when fp16 scaling is on


def test_teacher_on_cpu_student_on_gpu(make_config):
    cfg = load_config(
        make_config(
            "split", train={"device": "cuda", "teacher_device": "cpu", "max_steps": 2, "eval_every": 0}
        )
    )
    assert train(cfg).exit_code == 0
