"""The loop runs the LM head on label positions only: the loss equals the one over padded (B, L) tensors."""

from __future__ import annotations

import torch

from geodistill.config import load_config
from geodistill.contracts import ModelStates
from geodistill.losses import DistillationLoss
from geodistill.teacher.outputs import forward_states
from geodistill.train.loop import compute_loss
from geodistill.train.setup import build_run


def test_packed_label_positions_give_the_padded_loss_with_a_smaller_lm_head(make_config):
    cfg = load_config(make_config(loss={"kl_warmup_steps": 0}))
    run = build_run(cfg)
    run.student.trainable.eval()  # no dropout: the two forwards below see the same function
    loss_fn = DistillationLoss(cfg.loss)
    batch = run.collate([run.train_set[i] for i in range(3)])
    labels = batch["labels"]
    n_label = int((labels != -100).sum())
    assert n_label < labels.numel()  # prompt and padding positions exist
    rows = []
    run.student.whisper.proj_out.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[:-1]))
    with torch.no_grad():
        packed, packed_parts = compute_loss(run, loss_fn, batch, step=5)
        teacher = run.teacher(batch)
        s = forward_states(
            run.student.whisper, batch["decoder_input_ids"], input_features=batch["input_features"]
        )
        student = ModelStates(
            logits=s.logits, decoder_hidden=run.student.projectors["decoder"](s.decoder_hidden)
        )
        padded, padded_parts = loss_fn(student, teacher, labels, step=5, total_steps=cfg.train.max_steps)
    assert rows[0] == (1, n_label) and rows[1] == labels.shape
    assert abs(float(packed) - float(padded)) <= 1e-5
    for name in ("ce", "kl", "hidden_dec"):
        assert abs(float(packed_parts[name]) - float(padded_parts[name])) <= 1e-5, name
    # The teacher's per-token fields pack the same way (row order), per-utterance ones stay whole.
    keep = labels != -100
    at = teacher.at(keep)
    assert torch.equal(at.logits[0], teacher.logits[keep]) and at.encoder_hidden is teacher.encoder_hidden
