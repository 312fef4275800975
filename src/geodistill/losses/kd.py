"""Token-level losses on decoder logits: cross-entropy, KL(teacher || student) at a temperature, and
the same KL against a teacher cached only as its top-k logits.

Every loss takes student logits (B, L, V) and ``labels`` (B, L) whose -100 entries (prompt, padding)
are skipped, or a bool mask (B, L) of the positions to keep. Softmaxes run in fp32; a loss is the mean
over kept positions, and a batch with no kept position gives exactly 0, still attached to the graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodistill.contracts import IGNORE_INDEX
from geodistill.errors import GeodistillError


@dataclass(frozen=True)
class TopKLogits:
    """A teacher distribution stored as its k largest logits plus the log-normaliser of all of them."""

    values: Tensor  # (B, L, k) raw teacher logits of k distinct tokens (normally its k largest), any order
    indices: Tensor  # (B, L, k) int vocabulary ids of those tokens
    lse: Tensor  # (B, L) logsumexp over the FULL vocabulary of raw logits / lse_temperature
    lse_temperature: float = 1.0  # temperature `lse` was taken at (a cache stores 1.0); exact KL when = T


TeacherLogits = Tensor | TopKLogits  # full (B, L, V) logits, or the top-k form


def valid_mask(labels: Tensor) -> Tensor:
    """(B, L) labels with -100 for skipped positions, or a bool mask -> bool mask (B, L) of kept positions."""
    return labels if labels.dtype == torch.bool else labels != IGNORE_INDEX


def masked_mean(per_position: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``per_position`` (B, L) over ``mask`` (B, L); exactly 0 (with grad) when nothing is kept."""
    kept = torch.where(mask, per_position, torch.zeros_like(per_position))
    return kept.sum() / mask.sum().clamp_min(1)


def kl_per_position(log_p: Tensor, log_q: Tensor) -> Tensor:
    """sum_c p_c (log p_c - log q_c) over the last dim: (..., C) log-probs -> (...). 0 log 0 counts as 0."""
    present = log_p > float("-inf")
    # Zero both logs where p = 0 *before* multiplying, or -inf - -inf poisons the gradient with NaN.
    log_p = torch.where(present, log_p, torch.zeros_like(log_p))
    log_q = torch.where(present, log_q, torch.zeros_like(log_q))
    return (log_p.exp() * present * (log_p - log_q)).sum(-1)


def check_logits(student_logits: Tensor, labels: Tensor, where: str) -> None:
    if student_logits.dim() != 3 or labels.shape != student_logits.shape[:2]:
        raise GeodistillError(
            f"{where}: expected student logits (B, L, V) and labels (B, L), got "
            f"{tuple(student_logits.shape)} and {tuple(labels.shape)}"
        )


def _teacher_log_normaliser(topk: TopKLogits, temperature: float) -> Tensor:
    """log sum_j exp(z_j / T) over the full vocabulary, (B, L), from what ``topk`` stores.

    Exact when ``topk.lse_temperature == T``. Otherwise (a cache at T0 = 1 read at T = 2, say) the tail
    sum S0 = sum_tail exp(z_j / T0) is known but its shape is not; every tail logit is <= v_min (the
    smallest stored one), and we take the tail as S0 / exp(v_min / T0) tokens tied at v_min:
    S_T = S0 * exp(v_min * (1/T - 1/T0)). For T > T0 that is a lower bound on the true tail (an upper
    bound for T < T0), exact when the tail is empty (k = V) or tied at v_min; in between its error is
    not monotone in k and can be large (2-75% of the KL on Zipf-like V = 512 teachers at k = V/8 .. V/2),
    so store the lse at the training temperature when you can.
    """
    v = topk.values.float()
    lse_top = torch.logsumexp(v / temperature, dim=-1)
    lse = topk.lse.float()
    t0 = float(topk.lse_temperature)
    if t0 == float(temperature):
        # A cache rounding `lse` below the top-k's own sum would give a negative tail: never go below it.
        return torch.maximum(lse, lse_top)
    top_share = torch.exp(torch.logsumexp(v / t0, dim=-1) - lse).clamp(max=1.0)
    log_tail0 = lse + torch.log1p(-top_share)  # -inf when the top-k holds all the mass
    # the smallest stored logit; an entry at -inf (a token left out of the student's vocabulary) is none
    v_min = torch.where(torch.isfinite(v), v, torch.full_like(v, float("inf"))).amin(dim=-1)
    log_tail = log_tail0 + v_min * (1.0 / temperature - 1.0 / t0)
    return torch.logaddexp(lse_top, log_tail)


def topk_log_probs(student_logits: Tensor, topk: TopKLogits, temperature: float) -> tuple[Tensor, Tensor]:
    """Teacher and student log-probs at temperature T over k + 1 buckets: the k stored tokens + the rest.

    Returns (log_p_teacher, log_q_student), each (B, L, k + 1), or (B, L, k) when k = V (no tail).
    Teacher: log p_i = z_i / T - LSE_T (see ``_teacher_log_normaliser``), tail = 1 - sum_i p_i.
    Student: its exact full softmax at T gathered at the k ids, tail = its mass on every other id.

    A stored id the student cannot emit (logit -inf: a trimmed vocabulary keeps only the teacher's likely
    ids) leaves the teacher too: its p becomes 0 and its mass leaves LSE_T exactly (it is stored), so the
    teacher is renormalised over the rest, as with full logits.
    """
    s = student_logits.float() / temperature
    log_q = F.log_softmax(s, dim=-1)
    idx = topk.indices.to(device=s.device, dtype=torch.long)
    log_q_top = log_q.gather(-1, idx)
    norm = _teacher_log_normaliser(_to_device(topk, s.device), temperature)
    z = topk.values.to(s.device).float() / temperature
    dropped = torch.isneginf(log_q_top)
    if dropped.any():
        lost = torch.logsumexp(z.masked_fill(~dropped, float("-inf")), dim=-1)  # -inf where none is dropped
        norm = norm + torch.log1p(-torch.exp(lost - norm).clamp(max=1.0 - 1e-6))
        z = z.masked_fill(dropped, float("-inf"))
    log_p_top = z - norm.unsqueeze(-1)
    if idx.shape[-1] == s.shape[-1]:
        return log_p_top, log_q_top
    log_q_tail = log_q.scatter(-1, idx, float("-inf")).logsumexp(dim=-1, keepdim=True)
    p_top_sum = log_p_top.exp().sum(-1, keepdim=True).clamp(max=1.0)
    log_p_tail = torch.log1p(-p_top_sum)
    return torch.cat([log_p_top, log_p_tail], dim=-1), torch.cat([log_q_top, log_q_tail], dim=-1)


def _to_device(topk: TopKLogits, device: torch.device) -> TopKLogits:
    return TopKLogits(
        topk.values.to(device), topk.indices.to(device), topk.lse.to(device), topk.lse_temperature
    )


def teacher_student_log_probs(
    student_logits: Tensor, teacher: TeacherLogits, temperature: float
) -> tuple[Tensor, Tensor]:
    """(log_p_teacher, log_q_student) at temperature T, fp32, over the same classes (last dim).

    Full teacher logits (B, L, V) give full-vocabulary log-softmaxes (B, L, V), the teacher renormalised
    over the ids where the student's logit is finite (all of them, except under a trimmed vocabulary);
    a ``TopKLogits`` teacher gives the k + 1 bucket form of ``topk_log_probs``, the stored ids a trimmed
    student dropped renormalised away. Its tail bucket is its mass on the kept ids outside the top-k,
    while the teacher's tail also holds the teacher's mass on dropped ids outside the top-k: that mass is
    not renormalised away (a top-k cache does not know it) but asked of the student's kept tail ids; it
    is below the teacher's k-th probability per id.
    """
    if isinstance(teacher, TopKLogits):
        if (
            teacher.indices.shape != teacher.values.shape
            or teacher.values.shape[:2] != student_logits.shape[:2]
        ):
            raise GeodistillError(
                f"teacher top-k: values {tuple(teacher.values.shape)} and indices "
                f"{tuple(teacher.indices.shape)} must both be (B, L, k) with (B, L) = "
                f"{tuple(student_logits.shape[:2])}"
            )
        return topk_log_probs(student_logits, teacher, temperature)
    if teacher.shape != student_logits.shape:
        raise GeodistillError(
            f"teacher logits {tuple(teacher.shape)} do not match student logits "
            f"{tuple(student_logits.shape)} (same tokenizer and sequence needed)"
        )
    # A student that rules ids out (logit -inf: a trimmed vocabulary, geodistill.models.trim) is compared
    # with the teacher renormalised over the ids it can emit. It rules out the same ids at every position,
    # so one position tells; a full-vocabulary student rules none out and pays no (B, L, V) mask.
    student = student_logits.float()
    teacher = teacher.to(student.device).float()
    if student.numel() and bool(torch.isneginf(student.reshape(-1, student.shape[-1])[0]).any()):
        teacher = teacher.masked_fill(torch.isneginf(student), float("-inf"))
    log_p = F.log_softmax(teacher / temperature, dim=-1)
    return log_p, F.log_softmax(student / temperature, dim=-1)


class CrossEntropyLoss(nn.Module):
    """Token cross-entropy against the ground-truth labels, mean over non-ignored tokens."""

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """logits (B, L, V), labels (B, L) int with -100 = skip -> scalar."""
        check_logits(logits, labels, "cross-entropy")
        per_token = F.cross_entropy(
            logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
        )
        return masked_mean(per_token.view_as(labels), valid_mask(labels))


class KLDivergenceLoss(nn.Module):
    """T^2 * KL(softmax(z_teacher / T) || softmax(z_student / T)), summed over classes, mean over tokens.

    Per token this is ``F.kl_div(log_softmax(s / T), softmax(t / T), reduction="sum")``; the T^2 keeps
    its gradient on the scale of the T = 1 loss (Hinton et al.). The teacher may be full logits or the
    top-k form (then the KL is over k + 1 buckets, see ``topk_kl``).
    """

    def __init__(self, temperature: float = 1.0):
        super().__init__()
        if temperature <= 0:
            raise GeodistillError(f"loss.temperature: must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, student_logits: Tensor, teacher: TeacherLogits, labels: Tensor) -> Tensor:
        """student_logits (B, L, V), teacher (B, L, V) or TopKLogits, labels/mask (B, L) -> scalar."""
        check_logits(student_logits, labels, "KL")
        log_p, log_q = teacher_student_log_probs(student_logits, teacher, self.temperature)
        per_token = kl_per_position(log_p, log_q)
        return masked_mean(per_token, valid_mask(labels)) * self.temperature**2


def topk_kl(
    student_logits: Tensor,
    topk_values: Tensor,
    topk_indices: Tensor,
    teacher_lse: Tensor,
    labels: Tensor,
    temperature: float = 1.0,
    lse_temperature: float = 1.0,
) -> Tensor:
    """T^2 * KL(teacher || student) with the teacher known only through its top-k logits.

    student_logits (B, L, V); topk_values / topk_indices (B, L, k) raw teacher logits z and their ids;
    teacher_lse (B, L) = logsumexp(z_full / lse_temperature) over the whole vocabulary; labels (B, L).

    The KL is taken over k + 1 classes: the k stored tokens, exactly, plus one tail bucket,
        p_i = exp(z_i / T - LSE_T),  p_tail = 1 - sum_i p_i,
        q_i = softmax(s / T)_i,      q_tail = 1 - sum_i q_i  (the student's mass on all other tokens),
        KL  = T^2 * mean_tokens [ sum_i p_i log(p_i / q_i) + p_tail log(p_tail / q_tail) ].
    LSE_T = logsumexp(z_full / T) is ``teacher_lse`` itself when ``lse_temperature == temperature``, and
    then the bucket KL is exact: it equals the full KL at k = V and is a lower bound that rises
    monotonically toward it as k grows (merging classes never increases a KL). With ``lse_temperature``
    != T it is estimated as in ``_teacher_log_normaliser`` (tail tokens treated as tied at the smallest
    stored logit), which is exact at k = V; store the lse at the training temperature to avoid it.
    """
    topk = TopKLogits(topk_values, topk_indices, teacher_lse, lse_temperature)
    return KLDivergenceLoss(temperature)(student_logits, topk, labels)
