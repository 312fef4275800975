"""TAID: distil toward a moving target between the student and the teacher instead of the teacher itself.

Two variants, both KL(target || student) at temperature T with the T^2 factor, masked like the KL:

``SeedTAID`` (the seed notes): a mixture of probabilities,
    target = (1 - lam) * stopgrad(q_student) + lam * p_teacher,  lam = 0.1 -> 0.9 linear in step/total.

``AdaptiveTAID`` (Shing et al., ICLR 2025, SakanaAI/TAID): an interpolation of logits,
    target = softmax(((1 - t) * stopgrad(z_student) + t * z_teacher) / T),
with t from ``t_start`` (0.4) rising toward 1: after each optimiser step ``update(loss)`` sets
    m = beta * m + (1 - beta) * (prev_loss - loss) / prev_loss
    t = min(1, max(t_start + (1 - t_start) * step / total, t + alpha * sigmoid(m) * (1 - t))),
so t never decreases, follows at least the linear schedule, and moves faster while the loss falls.
At T = 1 this is the reference's loss; the first ``update`` only records the loss (no momentum yet).

Against a top-k teacher both work over the k + 1 buckets of ``topk_log_probs``. The mixture commutes
with merging classes, so ``SeedTAID`` there is the exact bucketed KL; the logit interpolation does
not: the tail bucket gets weight q_tail^(1-t) p_tail^t, an upper bound (Hoelder) on the true tail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodistill.errors import GeodistillError
from geodistill.losses.kd import (
    TeacherLogits,
    check_logits,
    kl_per_position,
    masked_mean,
    teacher_student_log_probs,
    valid_mask,
)


def linear_schedule(step: int, total_steps: int, start: float, end: float) -> float:
    """``start`` at step 0 to ``end`` at step ``total_steps``, linear, held at ``end`` afterwards."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return start + (end - start) * progress


def taid_kl(
    student_logits: Tensor,
    teacher: TeacherLogits,
    labels: Tensor,
    temperature: float,
    make_target: Callable[[Tensor, Tensor], Tensor],
) -> Tensor:
    """T^2 * mean_tokens KL(target || student) with target = make_target(log_p_teacher, log_q_student).

    student_logits (B, L, V), teacher (B, L, V) or TopKLogits, labels/mask (B, L) -> scalar. The target
    is built without gradient (the student's own share is a stop-gradient), so only log_q learns.
    """
    check_logits(student_logits, labels, "TAID")
    log_p, log_q = teacher_student_log_probs(student_logits, teacher, temperature)
    with torch.no_grad():
        log_target = make_target(log_p, log_q.detach())
    per_token = kl_per_position(log_target, log_q)
    return masked_mean(per_token, valid_mask(labels)) * temperature**2


def _check_temperature(temperature: float) -> None:
    if temperature <= 0:
        raise GeodistillError(f"loss.temperature: must be > 0, got {temperature}")


class SeedTAID(nn.Module):
    """Probability-mixture TAID with lam linear from ``start`` (0.1) to ``end`` (0.9) over training."""

    def __init__(self, temperature: float = 1.0, start: float = 0.1, end: float = 0.9):
        super().__init__()
        _check_temperature(temperature)
        if not 0 <= start <= end <= 1:
            raise GeodistillError(f"seed TAID: need 0 <= start <= end <= 1, got start={start}, end={end}")
        self.temperature, self.start, self.end = temperature, start, end

    def interpolation(self, step: int, total_steps: int) -> float:
        return linear_schedule(step, total_steps, self.start, self.end)

    def target_log_probs(self, log_p: Tensor, log_q: Tensor, value: float) -> Tensor:
        # log((1 - lam) q + lam p) without leaving log space, so tiny probabilities keep their precision.
        if value <= 0:
            return log_q
        if value >= 1:
            return log_p
        return torch.logaddexp(log_q + math.log1p(-value), log_p + math.log(value))

    def forward(
        self, student_logits: Tensor, teacher: TeacherLogits, labels: Tensor, step: int, total_steps: int
    ) -> Tensor:
        """student_logits (B, L, V), teacher (B, L, V) or TopKLogits, labels/mask (B, L) -> scalar."""
        lam = self.interpolation(step, total_steps)
        return taid_kl(
            student_logits,
            teacher,
            labels,
            self.temperature,
            lambda log_p, log_q: self.target_log_probs(log_p, log_q, lam),
        )


class AdaptiveTAID(nn.Module):
    """Logit-interpolation TAID whose t adapts to the loss; state (t, m, prev_loss) is checkpointed.

    Call ``update(loss_value, step, total_steps)`` once after every optimiser step with that step's TAID
    loss. ``state_dict()`` holds the state as plain floats (key ``_extra_state``), so a resumed run
    continues with identical t values.
    """

    def __init__(
        self, temperature: float = 1.0, t_start: float = 0.4, alpha: float = 5e-4, beta: float = 0.99
    ):
        super().__init__()
        _check_temperature(temperature)
        problems = []
        if not 0 <= t_start < 1:
            problems.append(f"loss.taid_start: must be in [0, 1), got {t_start}")
        if not 0 <= alpha <= 1:
            problems.append(f"loss.taid_alpha: must be in [0, 1], got {alpha}")
        if not 0 <= beta < 1:
            problems.append(f"loss.taid_beta: must be in [0, 1), got {beta}")
        if problems:
            raise GeodistillError("; ".join(problems))
        self.temperature = temperature
        self.t_start, self.t_end, self.alpha, self.beta = t_start, 1.0, alpha, beta
        self.t = t_start  # current interpolation value
        self.momentum = 0.0  # EMA of the relative loss decrease
        self.prev_loss: float | None = None  # loss seen by the previous update (None before the first)

    def interpolation(self, step: int, total_steps: int) -> float:
        return self.t

    def target_log_probs(self, log_p: Tensor, log_q: Tensor, value: float) -> Tensor:
        # log_softmax(log q) = z_s / T - const per row, so this is softmax(((1-t) z_s + t z_t) / T) exactly.
        if value <= 0:  # the endpoints skip 0 * -inf = NaN where one side has a zero-probability class
            return log_q
        if value >= 1:
            return log_p
        return F.log_softmax((1 - value) * log_q + value * log_p, dim=-1)

    def forward(
        self,
        student_logits: Tensor,
        teacher: TeacherLogits,
        labels: Tensor,
        step: int = 0,
        total_steps: int = 1,
    ) -> Tensor:
        """student_logits (B, L, V), teacher (B, L, V) or TopKLogits, labels/mask (B, L) -> scalar.

        Uses the current state's t (``step``/``total_steps`` only matter to ``update``).
        """
        t = self.t
        return taid_kl(
            student_logits,
            teacher,
            labels,
            self.temperature,
            lambda log_p, log_q: self.target_log_probs(log_p, log_q, t),
        )

    def update(self, loss_value: float | Tensor, step: int, total_steps: int) -> float:
        """Advance t after an optimiser step; returns the new t. Non-finite losses leave the state alone."""
        loss = float(loss_value)
        if not math.isfinite(loss):
            return self.t
        if self.prev_loss is None:
            self.prev_loss = loss
            return self.t
        relative_drop = (self.prev_loss - loss) / (self.prev_loss + 1e-15)
        self.momentum = self.beta * self.momentum + (1 - self.beta) * relative_drop
        scheduled = linear_schedule(step, total_steps, self.t_start, self.t_end)
        stepped = self.t + self.alpha / (1 + math.exp(-self.momentum)) * (1 - self.t)
        self.t = min(self.t_end, max(scheduled, stepped))
        self.prev_loss = loss
        return self.t

    def get_extra_state(self) -> dict[str, Any]:
        return {"t": self.t, "momentum": self.momentum, "prev_loss": self.prev_loss}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        missing = {"t", "momentum", "prev_loss"} - set(state)
        if missing:
            raise GeodistillError(f"adaptive TAID state: checkpoint lacks {sorted(missing)}")
        self.t, self.momentum = float(state["t"]), float(state["momentum"])
        self.prev_loss = None if state["prev_loss"] is None else float(state["prev_loss"])
