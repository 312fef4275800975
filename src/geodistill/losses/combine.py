"""The weighted distillation objective: CE + kl_weight(step) * (KL or TAID) + geo_weight * hidden.

``DistillationLoss`` owns nothing trainable. The student projects its hidden states to the teacher's
width (``geodistill.models.projector.RiemannianProjector``, one per side) *before* handing its
``ModelStates`` over, so the projectors live with the other trainable parameters in the optimiser and the
checkpoint. Its only state is the adaptive TAID's t (``state_dict`` / ``load_state_dict``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geodistill.config import LossConfig
from geodistill.contracts import ModelStates, TeacherOutputs
from geodistill.errors import GeodistillError
from geodistill.losses.hidden import GeodesicLoss, MSEHiddenLoss
from geodistill.losses.kd import CrossEntropyLoss, KLDivergenceLoss, TeacherLogits, TopKLogits, valid_mask
from geodistill.losses.taid import AdaptiveTAID, SeedTAID
from geodistill.models.frames import align_frames


def teacher_logits(teacher: TeacherOutputs) -> TeacherLogits:
    """The teacher's full logits if present, else its top-k form."""
    if teacher.logits is not None:
        return teacher.logits
    values, indices, lse = teacher.topk_values, teacher.topk_indices, teacher.logsumexp
    if values is None or indices is None or lse is None:
        raise GeodistillError(
            "teacher outputs: need logits, or all of topk_values, topk_indices and logsumexp"
        )
    return TopKLogits(values, indices, lse, lse_temperature=float(teacher.logsumexp_temperature))


class DistillationLoss(nn.Module):
    """total = ce_weight * CE + kl_weight_at(step) * (KL | TAID) + geo_weight * hidden.

    ``hidden`` is the mean of the active hidden terms (decoder, encoder or both), so ``geo_weight`` means
    the same whatever ``hidden_on`` is. Decoder states are compared where labels != -100; encoder states
    after aligning the teacher's frames to the student's (``encoder_align``), where ``encoder_mask`` is
    True (all frames when None). With ``hidden_loss="mse"`` both sides are L2-normalised first, matching
    the projector's unit-norm output.
    """

    def __init__(self, cfg: LossConfig):
        super().__init__()
        self.cfg = cfg
        self.ce = CrossEntropyLoss()
        self.kl = KLDivergenceLoss(cfg.temperature)
        self.taid: SeedTAID | AdaptiveTAID | None = None
        if cfg.taid == "seed":
            self.taid = SeedTAID(cfg.temperature)
        elif cfg.taid == "adaptive":
            self.taid = AdaptiveTAID(cfg.temperature, cfg.taid_start, cfg.taid_alpha, cfg.taid_beta)
        self.hidden: GeodesicLoss | MSEHiddenLoss | None = None
        if cfg.hidden_loss == "geodesic":
            self.hidden = GeodesicLoss()
        elif cfg.hidden_loss == "mse":
            self.hidden = MSEHiddenLoss(normalize=True)
        self._taid_sum: Tensor | None = None  # sum of finite TAID losses since the last update()
        self._taid_count: Tensor | None = None  # how many there were (tensors: no host sync per forward)

    def kl_weight_at(self, step: int) -> float:
        """Linear warm-up 0 -> kl_weight over kl_warmup_steps, constant after (and always if 0 steps)."""
        warmup = self.cfg.kl_warmup_steps
        if warmup <= 0:
            return self.cfg.kl_weight
        return self.cfg.kl_weight * min(max(step, 0) / warmup, 1.0)

    def forward(
        self,
        student: ModelStates,
        teacher: TeacherOutputs,
        labels: Tensor,
        step: int,
        total_steps: int,
        encoder_mask: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """student: its states with hidden states projected to the teacher's width; labels (B, L)
        with -100 = skip; ``step`` = index of the optimiser step being computed; encoder_mask (B, T_s).

        Returns (total, parts): parts are detached 0-d fp32 tensors: "ce", "kl" or "taid" (+ "taid_t"),
        "kl_weight", "hidden_dec" / "hidden_enc" and "hidden" when a hidden loss is on, "total".
        """
        w_kl = self.kl_weight_at(step)
        parts: dict[str, Tensor] = {"ce": self.ce(student.logits, labels)}
        soft = teacher_logits(teacher)
        if self.taid is None:
            parts["kl"] = self.kl(student.logits, soft, labels)
            distil = parts["kl"]
        else:
            distil = parts["taid"] = self.taid(student.logits, soft, labels, step, total_steps)
            parts["taid_t"] = torch.tensor(self.taid.interpolation(step, total_steps))
            if torch.is_grad_enabled():  # validation passes (no_grad) must not steer the adaptive t
                self._record_taid(distil.detach())
        total = self.cfg.ce_weight * parts["ce"] + w_kl * distil
        hidden = self._hidden_terms(student, teacher, labels, encoder_mask)
        if hidden:
            parts.update(hidden)
            parts["hidden"] = torch.stack(list(hidden.values())).mean()
            total = total + self.cfg.geo_weight * parts["hidden"]
        parts["kl_weight"] = torch.tensor(w_kl)
        parts["total"] = total
        return total, {name: value.detach().float() for name, value in parts.items()}

    def _hidden_terms(
        self, student: ModelStates, teacher: TeacherOutputs, labels: Tensor, encoder_mask: Tensor | None
    ) -> dict[str, Tensor]:
        if self.hidden is None:
            return {}
        terms = {}
        if self.cfg.hidden_on in ("decoder", "both") and self.cfg.hidden_layers == "all":
            s, t = _need(student.decoder_layers, teacher.decoder_layers, "decoder_layers")
            per_layer = [self.hidden(s[j], t[j].to(s[j].device), valid_mask(labels)) for j in sorted(s)]
            terms["hidden_dec"] = torch.stack(per_layer).mean()
        elif self.cfg.hidden_on in ("decoder", "both"):
            s, t = _need(student.decoder_hidden, teacher.decoder_hidden, "decoder_hidden")
            terms["hidden_dec"] = self.hidden(s, t, valid_mask(labels))
        if self.cfg.hidden_on in ("encoder", "both"):
            s, t = _need(student.encoder_hidden, teacher.encoder_hidden, "encoder_hidden")
            t = align_frames(t.to(s.device), s.shape[1], self.cfg.encoder_align)
            terms["hidden_enc"] = self.hidden(s, t, encoder_mask)
        return terms

    def _record_taid(self, value: Tensor) -> None:
        # A non-finite micro-batch (its step gets skipped) must not poison the next update's mean.
        finite = torch.isfinite(value)
        value = torch.where(finite, value, torch.zeros_like(value))
        if self._taid_sum is None or self._taid_count is None:
            self._taid_sum, self._taid_count = value, finite.float()
        else:
            self._taid_sum, self._taid_count = self._taid_sum + value, self._taid_count + finite.float()

    def update(self, step: int, total_steps: int) -> None:
        """Call once after each optimiser step (``step`` = steps done): feeds the mean finite TAID loss of the
        gradient-enabled forwards since the last call to the adaptive t. A no-op for other modes."""
        if (
            isinstance(self.taid, AdaptiveTAID)
            and self._taid_sum is not None
            and self._taid_count is not None
        ):
            count = float(self._taid_count)
            if count > 0:
                self.taid.update(float(self._taid_sum) / count, step, total_steps)
        self._taid_sum, self._taid_count = None, None


def _need(student_states, teacher_states, name: str):
    if student_states is None or teacher_states is None:
        side = "student" if student_states is None else "teacher"
        raise GeodistillError(
            f"hidden loss on {name}: the {side} outputs lack {name} (or set loss.hidden_loss=none)"
        )
    return student_states, teacher_states
