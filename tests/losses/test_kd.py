"""CE, KL * T^2 and the top-k KL against hand-computed values and their defining properties."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from geodistill.errors import GeodistillError
from geodistill.losses import CrossEntropyLoss, KLDivergenceLoss, TopKLogits, topk_kl

from .reference import kl, logsumexp, softmax

STUDENT = [[[1.0, 2.0, 0.5, -1.0], [0.0, 0.3, 2.5, 1.0], [3.0, -2.0, 0.0, 1.5]]]  # (1, 3, 4)
TEACHER = [[[2.0, 1.0, 0.0, -0.5], [0.5, 0.5, 3.0, 0.0], [1.0, 1.0, 1.0, 1.0]]]
LABELS = [[1, 2, -100]]  # the third position is padding


def test_cross_entropy_golden():
    logits = torch.tensor(STUDENT, requires_grad=True)
    loss = CrossEntropyLoss()(logits, torch.tensor(LABELS))
    expected = (-math.log(softmax(STUDENT[0][0])[1]) - math.log(softmax(STUDENT[0][1])[2])) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_cross_entropy_golden_batch_of_two_with_padding():
    logits = torch.tensor([[[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]], [[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]])
    labels = torch.tensor([[2, -100], [0, 1]])
    expected = (
        -math.log(softmax([0.0, 1.0, 2.0])[2])
        - math.log(softmax([2.0, 0.0, -1.0])[0])
        - math.log(softmax([0.5, 0.5, 0.0])[1])
    ) / 3
    assert CrossEntropyLoss()(logits, labels).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_kl_golden(temperature):
    loss = KLDivergenceLoss(temperature)(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS))
    per_token = [
        kl(softmax(TEACHER[0][i], temperature), softmax(STUDENT[0][i], temperature)) for i in range(2)
    ]
    assert loss.item() == pytest.approx(temperature**2 * sum(per_token) / 2, rel=1e-5)


def test_kl_matches_the_spec_formula_with_kl_div():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11) * 3
    labels = torch.randint(0, 11, (2, 5))
    labels[1, 3:] = -100
    T = 2.0
    per_token = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="none").sum(-1)
    mask = labels != -100
    expected = per_token[mask].mean() * T**2
    assert KLDivergenceLoss(T)(s, t, labels).item() == pytest.approx(expected.item(), rel=1e-5)


def test_kl_of_a_distribution_with_itself_is_zero():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 7) * 5
    assert KLDivergenceLoss(2.0)(logits, logits.clone(), torch.zeros(2, 4, dtype=torch.long)).item() == (
        pytest.approx(0.0, abs=1e-6)
    )


def test_kl_times_t_squared_tends_to_the_logit_matching_limit():
    # Hinton et al.: for large T, T^2 * KL -> (1 / 2V) * sum_i (d_i - mean d)^2 with d = z_t - z_s.
    s, t = [0.5, -1.0, 2.0, 0.0, 1.0], [1.5, 0.0, -1.0, 0.5, 2.0]
    d = [a - b for a, b in zip(t, s, strict=True)]
    mean = sum(d) / len(d)
    limit = sum((x - mean) ** 2 for x in d) / (2 * len(d))
    loss = KLDivergenceLoss(200.0)(torch.tensor([[s]]), torch.tensor([[t]]), torch.tensor([[0]]))
    assert loss.item() == pytest.approx(limit, rel=1e-2)


def test_kl_handles_a_student_with_minus_inf_logits_where_the_teacher_has_no_mass():
    student = torch.tensor([[[0.0, 1.0, float("-inf")]]], requires_grad=True)
    teacher = torch.tensor([[[1.0, 0.0, float("-inf")]]])
    loss = KLDivergenceLoss(1.0)(student, teacher, torch.tensor([[0]]))
    loss.backward()
    assert loss.item() == pytest.approx(kl(softmax([1.0, 0.0]), softmax([0.0, 1.0])), abs=1e-6)
    assert torch.isfinite(student.grad).all()


def _all_masked(loss_fn):
    student = torch.randn(2, 3, 6, requires_grad=True)
    loss = loss_fn(student, torch.full((2, 3), -100))
    loss.backward()
    return loss, student.grad


@pytest.mark.parametrize(
    "loss_fn",
    [
        lambda s, y: CrossEntropyLoss()(s, y),
        lambda s, y: KLDivergenceLoss(2.0)(s, torch.randn(2, 3, 6), y),
        lambda s, y: topk_kl(
            s, torch.randn(2, 3, 2), torch.randint(0, 6, (2, 3, 2)), torch.randn(2, 3) + 5, y, 2.0
        ),
    ],
    ids=["ce", "kl", "topk_kl"],
)
def test_all_masked_batch_gives_zero_and_finite_grads(loss_fn):
    loss, grad = _all_masked(loss_fn)
    assert loss.item() == 0.0
    assert grad is not None and torch.isfinite(grad).all() and (grad == 0).all()


def test_bool_mask_is_accepted_in_place_of_labels():
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    by_labels = KLDivergenceLoss(2.0)(s, t, torch.tensor(LABELS))
    by_mask = KLDivergenceLoss(2.0)(s, t, torch.tensor([[True, True, False]]))
    assert by_mask.item() == pytest.approx(by_labels.item())


def test_shape_mismatches_are_clear_errors():
    with pytest.raises(GeodistillError, match="teacher logits"):
        KLDivergenceLoss(1.0)(torch.zeros(1, 2, 5), torch.zeros(1, 2, 6), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(GeodistillError, match="labels"):
        CrossEntropyLoss()(torch.zeros(1, 2, 5), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(GeodistillError, match="temperature"):
        KLDivergenceLoss(0.0)


# ---- top-k teacher ------------------------------------------------------------------------------------

TK_TEACHER = [3.0, 1.0, 0.0, -1.0, 2.5]  # V = 5; top-2 = ids 0 (3.0) and 4 (2.5)
TK_STUDENT = [1.0, 0.0, 0.5, 0.2, 2.0]


def _topk_inputs(k: int, lse_temperature: float = 1.0):
    values, indices = torch.tensor([[TK_TEACHER]]).topk(k, dim=-1)
    lse = torch.tensor([[logsumexp(TK_TEACHER, lse_temperature)]])
    return torch.tensor([[TK_STUDENT]]), values, indices, lse


def test_topk_kl_golden_with_exact_lse():
    T = 2.0
    student, values, indices, lse = _topk_inputs(2, lse_temperature=T)
    p, q = softmax(TK_TEACHER, T), softmax(TK_STUDENT, T)
    p_b = [p[0], p[4], 1 - p[0] - p[4]]
    q_b = [q[0], q[4], 1 - q[0] - q[4]]
    loss = topk_kl(student, values, indices, lse, torch.tensor([[7]]), temperature=T, lse_temperature=T)
    assert loss.item() == pytest.approx(T**2 * kl(p_b, q_b), rel=1e-5)


def test_topk_kl_golden_with_lse_at_t1_read_at_t2():
    # Documented estimate: the T=1 tail S1 is taken as tokens tied at the smallest kept logit v_min, so
    # the tail at T is S1 * exp(v_min * (1/T - 1)).
    T = 2.0
    student, values, indices, lse = _topk_inputs(2, lse_temperature=1.0)
    s1 = math.exp(logsumexp(TK_TEACHER)) - math.exp(3.0) - math.exp(2.5)
    tail_t = s1 * math.exp(2.5 * (1 / T - 1))
    norm = math.exp(3.0 / T) + math.exp(2.5 / T) + tail_t
    p_b = [math.exp(3.0 / T) / norm, math.exp(2.5 / T) / norm, tail_t / norm]
    q = softmax(TK_STUDENT, T)
    q_b = [q[0], q[4], 1 - q[0] - q[4]]
    loss = topk_kl(student, values, indices, lse, torch.tensor([[7]]), temperature=T, lse_temperature=1.0)
    assert loss.item() == pytest.approx(T**2 * kl(p_b, q_b), rel=1e-5)


def _random_teacher(seed: int, vocab: int = 64):
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 3, vocab, generator=g) * 2
    teacher = torch.randn(2, 3, vocab, generator=g) * 3
    labels = torch.tensor([[1, 2, -100], [3, 4, 5]])
    return student, teacher, labels


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.7])
@pytest.mark.parametrize("lse_temperature", [1.0, None])  # None: lse stored at the loss temperature
def test_topk_kl_with_k_equal_v_is_the_full_kl(temperature, lse_temperature):
    student, teacher, labels = _random_teacher(0)
    lse_t = temperature if lse_temperature is None else lse_temperature
    full = KLDivergenceLoss(temperature)(student, teacher, labels)
    # Any order of the k = V ids works: shuffle them.
    perm = torch.randperm(teacher.shape[-1], generator=torch.Generator().manual_seed(3))
    idx = perm.expand(2, 3, -1).contiguous()
    vals = teacher.gather(-1, idx)
    lse = torch.logsumexp(teacher / lse_t, dim=-1)
    loss = topk_kl(student, vals, idx, lse, labels, temperature=temperature, lse_temperature=lse_t)
    assert loss.item() == pytest.approx(full.item(), abs=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_kl_error_shrinks_monotonically_as_k_grows_with_exact_lse(temperature):
    student, teacher, labels = _random_teacher(1)
    full = KLDivergenceLoss(temperature)(student, teacher, labels).item()
    lse = torch.logsumexp(teacher / temperature, dim=-1)
    errors = []
    for k in (1, 2, 4, 8, 16, 32, 63, 64):
        vals, idx = teacher.topk(k, dim=-1)
        approx = topk_kl(student, vals, idx, lse, labels, temperature, lse_temperature=temperature).item()
        errors.append(full - approx)
    # Merging classes can only lower a KL, so the bucketed value is a lower bound rising to the full KL.
    assert all(e >= -1e-5 for e in errors)
    assert all(a >= b - 1e-5 for a, b in zip(errors, errors[1:], strict=False))
    assert errors[0] > 10 * abs(errors[-1]) and abs(errors[-1]) < 1e-5


def test_topk_kl_estimated_tail_error_shrinks_as_k_grows():
    # A peaked, long-tailed teacher (Zipf-like logits) read at T=2 from an lse stored at T=1.
    vocab = 512
    ranks = torch.arange(1, vocab + 1, dtype=torch.float32)
    base = -2.0 * torch.log(ranks)
    g = torch.Generator().manual_seed(5)
    teacher = (base[torch.randperm(vocab, generator=g)] + 0.3 * torch.randn(vocab, generator=g)).view(
        1, 1, -1
    )
    student = teacher + torch.randn(1, 1, vocab, generator=g)
    labels = torch.tensor([[0]])
    full = KLDivergenceLoss(2.0)(student, teacher, labels).item()
    lse1 = torch.logsumexp(teacher, dim=-1)
    errors = []
    for k in (8, 64, 256, vocab):
        vals, idx = teacher.topk(k, dim=-1)
        errors.append(abs(full - topk_kl(student, vals, idx, lse1, labels, 2.0, lse_temperature=1.0).item()))
    assert errors[0] > errors[1] > errors[2] > errors[3] and errors[3] < 1e-5


def test_topk_kl_gradients_are_finite_and_match_the_full_kl_at_k_equal_v():
    student, teacher, labels = _random_teacher(2, vocab=16)
    s_full = student.clone().requires_grad_(True)
    KLDivergenceLoss(2.0)(s_full, teacher, labels).backward()
    s_top = student.clone().requires_grad_(True)
    vals, idx = teacher.topk(16, dim=-1)
    topk_kl(s_top, vals, idx, torch.logsumexp(teacher, -1), labels, 2.0, lse_temperature=1.0).backward()
    assert torch.allclose(s_top.grad, s_full.grad, atol=1e-6)
    s_small = student.clone().requires_grad_(True)
    vals, idx = teacher.topk(3, dim=-1)
    topk_kl(s_small, vals, idx, torch.logsumexp(teacher, -1), labels, 2.0).backward()
    assert torch.isfinite(s_small.grad).all() and s_small.grad.abs().sum() > 0


def test_topk_kl_survives_an_lse_rounded_below_the_topk_sum():
    # An fp16 cache can round lse a little under logsumexp(top-k); that must not give a negative tail.
    student, teacher, labels = _random_teacher(3, vocab=8)
    vals, idx = teacher.topk(8, dim=-1)
    lse = torch.logsumexp(teacher, -1) - 1e-3
    loss = topk_kl(student, vals, idx, lse, labels, 1.0)
    assert torch.isfinite(loss)


def test_topk_form_through_kl_module_and_shape_errors():
    student, values, indices, lse = _topk_inputs(2, lse_temperature=2.0)
    topk = TopKLogits(values, indices, lse, lse_temperature=2.0)
    direct = topk_kl(student, values, indices, lse, torch.tensor([[0]]), 2.0, lse_temperature=2.0)
    assert KLDivergenceLoss(2.0)(student, topk, torch.tensor([[0]])).item() == pytest.approx(direct.item())
    with pytest.raises(GeodistillError, match="top-k"):
        KLDivergenceLoss(2.0)(student, TopKLogits(values, indices[..., :1], lse), torch.tensor([[0]]))
