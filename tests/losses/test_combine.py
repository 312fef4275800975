"""DistillationLoss: weights, warm-up, parts, full vs top-k teacher, hidden sides, TAID state."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
import torch

from geodistill.config import LossConfig
from geodistill.contracts import ModelStates, TeacherOutputs
from geodistill.errors import GeodistillError
from geodistill.losses import (
    CrossEntropyLoss,
    DistillationLoss,
    GeodesicLoss,
    KLDivergenceLoss,
    MSEHiddenLoss,
    SeedTAID,
    align_frames,
)

B, L, V, D, T_S, T_T = 2, 4, 7, 5, 3, 6


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    student = ModelStates(
        logits=torch.randn(B, L, V, generator=g, requires_grad=True),
        decoder_hidden=torch.randn(B, L, D, generator=g, requires_grad=True),
        encoder_hidden=torch.randn(B, T_S, D, generator=g, requires_grad=True),
    )
    teacher = TeacherOutputs(
        logits=torch.randn(B, L, V, generator=g) * 2,
        decoder_hidden=torch.randn(B, L, D, generator=g),
        encoder_hidden=torch.randn(B, T_T, D, generator=g),
    )
    labels = torch.tensor([[-100, 1, 2, 3], [-100, 4, -100, -100]])
    return student, teacher, labels


def test_kl_weight_warms_up_linearly_then_holds():
    loss = DistillationLoss(LossConfig(kl_weight=0.02, kl_warmup_steps=1000))
    assert loss.kl_weight_at(0) == 0.0
    assert loss.kl_weight_at(250) == pytest.approx(0.005)
    assert loss.kl_weight_at(1000) == pytest.approx(0.02)
    assert loss.kl_weight_at(5000) == pytest.approx(0.02)
    assert DistillationLoss(LossConfig(kl_weight=0.3, kl_warmup_steps=0)).kl_weight_at(0) == 0.3


def test_total_is_the_weighted_sum_of_the_parts():
    cfg = LossConfig(ce_weight=0.7, kl_weight=0.4, kl_warmup_steps=10, temperature=2.0, geo_weight=0.9)
    student, teacher, labels = _batch()
    total, parts = DistillationLoss(cfg)(student, teacher, labels, step=5, total_steps=100)
    ce = CrossEntropyLoss()(student.logits, labels)
    kl = KLDivergenceLoss(2.0)(student.logits, teacher.logits, labels)
    hid = GeodesicLoss()(student.decoder_hidden, teacher.decoder_hidden, labels != -100)
    expected = 0.7 * ce + 0.4 * 0.5 * kl + 0.9 * hid
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(parts) == {"ce", "kl", "kl_weight", "hidden_dec", "hidden", "total"}
    assert parts["kl_weight"].item() == pytest.approx(0.2)
    assert parts["ce"].item() == pytest.approx(ce.item()) and parts["kl"].item() == pytest.approx(kl.item())
    assert all(not v.requires_grad and v.dim() == 0 for v in parts.values())
    total.backward()
    assert student.logits.grad is not None and student.decoder_hidden.grad is not None


def test_topk_teacher_with_k_equal_v_gives_the_same_total():
    cfg = LossConfig(kl_warmup_steps=0, kl_weight=1.0, temperature=2.0)
    student, teacher, labels = _batch(1)
    full, _ = DistillationLoss(cfg)(student, teacher, labels, step=0, total_steps=10)
    vals, idx = teacher.logits.topk(V, dim=-1)
    lse = torch.logsumexp(teacher.logits, dim=-1)
    cached = replace(teacher, logits=None, topk_values=vals, topk_indices=idx, logsumexp=lse)
    via_topk, _ = DistillationLoss(cfg)(student, cached, labels, step=0, total_steps=10)
    assert via_topk.item() == pytest.approx(full.item(), abs=1e-5)


def test_teacher_outputs_without_encoder_states_serve_a_decoder_side_loss():
    student, teacher, labels = _batch(2)
    loss = DistillationLoss(LossConfig())
    duck = TeacherOutputs(logits=teacher.logits, decoder_hidden=teacher.decoder_hidden, encoder_hidden=None)
    a, _ = loss(student, duck, labels, step=3, total_steps=10)
    b, _ = loss(student, teacher, labels, step=3, total_steps=10)
    assert a.item() == b.item()


def test_encoder_side_aligns_teacher_frames_and_both_averages_the_sides():
    student, teacher, labels = _batch(3)
    enc_mask = torch.tensor([[True, True, False], [True, True, True]])
    cfg = LossConfig(hidden_on="both", hidden_loss="mse", encoder_align="pool", geo_weight=2.0)
    _, parts = DistillationLoss(cfg)(student, teacher, labels, step=0, total_steps=10, encoder_mask=enc_mask)
    pooled = align_frames(teacher.encoder_hidden, T_S, "pool")  # 6 -> 3 frames, kernel 2
    mse = MSEHiddenLoss(normalize=True)
    enc = mse(student.encoder_hidden, pooled, enc_mask)
    dec = mse(student.decoder_hidden, teacher.decoder_hidden, labels != -100)
    assert parts["hidden_enc"].item() == pytest.approx(enc.item(), rel=1e-6)
    assert parts["hidden_dec"].item() == pytest.approx(dec.item(), rel=1e-6)
    assert parts["hidden"].item() == pytest.approx((enc.item() + dec.item()) / 2, rel=1e-6)


def test_hidden_none_skips_hidden_states_entirely():
    student, teacher, labels = _batch(4)
    bare = ModelStates(logits=student.logits)
    total, parts = DistillationLoss(LossConfig(hidden_loss="none"))(bare, teacher, labels, 0, 10)
    assert "hidden" not in parts and torch.isfinite(total)


def test_missing_states_and_bad_config_are_clear_errors():
    student, teacher, labels = _batch(5)
    with pytest.raises(GeodistillError, match="encoder_hidden"):
        DistillationLoss(LossConfig(hidden_on="encoder"))(ModelStates(student.logits), teacher, labels, 0, 10)
    with pytest.raises(GeodistillError, match="topk_values"):
        DistillationLoss(LossConfig())(student, TeacherOutputs(), labels, 0, 10)
    with pytest.raises(GeodistillError, match="loss.taid"):
        DistillationLoss(LossConfig(taid="sometimes"))


def test_all_masked_batch_is_finite_with_zero_token_losses():
    student, teacher, labels = _batch(6)
    total, parts = DistillationLoss(LossConfig())(student, teacher, torch.full((B, L), -100), 5, 10)
    total.backward()
    assert total.item() == 0.0 and parts["ce"].item() == 0.0 and parts["hidden_dec"].item() == 0.0
    assert torch.isfinite(student.logits.grad).all() and torch.isfinite(student.decoder_hidden.grad).all()


def test_seed_taid_replaces_kl_and_logs_lambda():
    cfg = LossConfig(taid="seed", kl_weight=1.0, kl_warmup_steps=0, temperature=2.0)
    student, teacher, labels = _batch(7)
    total, parts = DistillationLoss(cfg)(student, teacher, labels, step=50, total_steps=100)
    assert "kl" not in parts and parts["taid_t"].item() == pytest.approx(0.5)
    expected = SeedTAID(2.0)(student.logits, teacher.logits, labels, 50, 100)
    assert parts["taid"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_adaptive_taid_updates_from_the_mean_loss_and_checkpoints():
    cfg = LossConfig(taid="adaptive", taid_start=0.4, taid_alpha=0.2, taid_beta=0.5)
    loss = DistillationLoss(cfg)
    student, teacher, labels = _batch(8)
    values = []
    for step in range(3):
        for _ in range(2):  # two micro-batches per optimiser step
            _, parts = loss(student, teacher, labels, step=step, total_steps=1000)
            values.append(parts["taid"].item())
        loss.update(step + 1, 1000)
    assert loss.taid.t > 0.4  # the first update only records a loss; the next ones move t
    buf = io.BytesIO()
    torch.save(loss.state_dict(), buf)
    buf.seek(0)
    resumed = DistillationLoss(cfg)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert resumed.taid.get_extra_state() == loss.taid.get_extra_state()
    for fn in (loss, resumed):
        fn(student, teacher, labels, step=3, total_steps=1000)
        fn.update(4, 1000)
    assert resumed.taid.t == loss.taid.t


def test_non_finite_taid_values_do_not_reach_the_adaptive_update():
    loss = DistillationLoss(LossConfig(taid="adaptive"))
    loss._record_taid(torch.tensor(2.0))
    loss.update(1, 10)
    loss._record_taid(torch.tensor(float("nan")))
    loss._record_taid(torch.tensor(1.0))
    loss.update(2, 10)
    assert loss.taid.prev_loss == 1.0


def test_forwards_without_grad_do_not_feed_the_adaptive_update():
    loss = DistillationLoss(LossConfig(taid="adaptive"))
    student, teacher, labels = _batch(9)
    with torch.no_grad():
        loss(student, teacher, labels, step=0, total_steps=10)
    loss.update(1, 10)
    assert loss.taid.prev_loss is None
    loss(student, teacher, labels, step=1, total_steps=10)
    loss.update(2, 10)
    assert loss.taid.prev_loss is not None
