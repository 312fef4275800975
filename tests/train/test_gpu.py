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


def test_shared_cross_attention_keys_values_under_fp16_autocast(make_config):
    """The fp16 teacher's keys/values stand in for the student's own projections under AMP."""
    from geodistill.losses import DistillationLoss
    from geodistill.train.loop import compute_loss
    from geodistill.train.setup import build_run

    lora = {"r": 4, "alpha": 8, "dropout": 0.1, "targets": "decoder-text-side"}
    train_cfg = {"amp": "fp16", "device": "cuda", "max_steps": 3, "eval_every": 0}
    cfg = load_config(make_config("kv-cuda", student={"lora": lora}, train=train_cfg))
    run = build_run(cfg)
    assert run.student.cross_kv == {0: 1} and next(run.teacher.model.parameters()).dtype == torch.float16
    run.student.trainable.eval()
    loss_fn = DistillationLoss(cfg.loss)
    batch = run.collate([run.train_set[i] for i in range(2)])
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        reused, _ = compute_loss(run, loss_fn, batch, step=1)
        run.student.cross_kv = {}
        computed, _ = compute_loss(run, loss_fn, batch, step=1)
    assert (
        torch.isfinite(reused) and abs(float(reused) - float(computed)) <= 1e-2 * abs(float(computed)) + 1e-3
    )
