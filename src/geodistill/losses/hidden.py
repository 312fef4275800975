"""Hidden-state losses (geodesic on the unit sphere, flat MSE) and temporal alignment of encoder frames.

States are (B, L, D) with an optional bool mask (B, L) of positions to keep (None = all); the loss is
the mean over kept positions, computed in fp32, and exactly 0 (with grad) when no position is kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodistill.errors import GeodistillError
from geodistill.losses.kd import masked_mean


def _check_pair(student: Tensor, teacher: Tensor, mask: Tensor | None, where: str) -> Tensor:
    """Validate shapes; return the (B, L) bool mask (all True when ``mask`` is None)."""
    if student.shape != teacher.shape:
        raise GeodistillError(
            f"{where}: student states {tuple(student.shape)} and teacher states {tuple(teacher.shape)} "
            "differ (project the student to the teacher's width with RiemannianProjector, align frame counts "
            "with align_frames)"
        )
    if mask is None:
        return torch.ones(student.shape[:-1], dtype=torch.bool, device=student.device)
    if mask.shape != student.shape[:-1]:
        raise GeodistillError(
            f"{where}: mask {tuple(mask.shape)} does not match states {tuple(student.shape)}"
        )
    return mask.to(device=student.device, dtype=torch.bool)


class GeodesicLoss(nn.Module):
    """Great-circle distance acos(cos_sim(a, b)) between L2-normalised states, mean over kept positions.

    The cosine is clamped to [-1 + eps, 1 - eps] because d/dx acos(x) = -1/sqrt(1 - x^2) is infinite at
    +-1; at the clamp the gradient is 0, elsewhere finite. So the loss runs from acos(1 - eps) (about
    sqrt(2 eps), 4.9e-4 for eps = 1e-7 in fp32) for equal directions to about pi for opposite ones.
    """

    def __init__(self, eps: float = 1e-7):
        super().__init__()
        if not 0 < eps < 1:
            raise GeodistillError(f"geodesic eps: must be in (0, 1), got {eps}")
        self.eps = eps

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
        """student, teacher (B, L, D) (any scale: both are normalised here); mask (B, L) or None -> scalar."""
        keep = _check_pair(student, teacher, mask, "geodesic loss")
        a = F.normalize(student.float(), dim=-1)
        b = F.normalize(teacher.to(student.device).float(), dim=-1)
        cos = (a * b).sum(-1).clamp(-1 + self.eps, 1 - self.eps)
        return masked_mean(torch.acos(cos), keep)


class MSEHiddenLoss(nn.Module):
    """Mean squared error per element over kept positions: the flat (chordal) alternative to geodesic.

    With ``normalize=True`` both sides are L2-normalised first, so the loss is (2 - 2 cos) / D: the same
    sphere as ``GeodesicLoss`` measured along the chord (what a projected, normalised student needs, since
    it can never match the raw teacher norm).
    """

    def __init__(self, normalize: bool = False):
        super().__init__()
        self.normalize = normalize

    def forward(self, student: Tensor, teacher: Tensor, mask: Tensor | None = None) -> Tensor:
        """student, teacher (B, L, D); mask (B, L) or None -> scalar."""
        keep = _check_pair(student, teacher, mask, "MSE hidden loss")
        a, b = student.float(), teacher.to(student.device).float()
        if self.normalize:
            a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
        return masked_mean((a - b).pow(2).mean(-1), keep)
