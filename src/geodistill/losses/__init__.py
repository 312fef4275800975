"""Distillation losses: CE, KL * T^2 (full or top-k teacher), geodesic / MSE hidden, TAID, weighted sum."""

from geodistill.losses.combine import DistillationLoss, teacher_logits
from geodistill.losses.hidden import GeodesicLoss, MSEHiddenLoss
from geodistill.losses.kd import (
    IGNORE_INDEX,
    CrossEntropyLoss,
    KLDivergenceLoss,
    TopKLogits,
    masked_mean,
    teacher_student_log_probs,
    topk_kl,
    topk_log_probs,
    valid_mask,
)
from geodistill.losses.taid import AdaptiveTAID, SeedTAID, linear_schedule
from geodistill.models.frames import align_frames

__all__ = [
    "IGNORE_INDEX",
    "AdaptiveTAID",
    "CrossEntropyLoss",
    "DistillationLoss",
    "GeodesicLoss",
    "KLDivergenceLoss",
    "MSEHiddenLoss",
    "SeedTAID",
    "TopKLogits",
    "align_frames",
    "linear_schedule",
    "masked_mean",
    "teacher_logits",
    "teacher_student_log_probs",
    "topk_kl",
    "topk_log_probs",
    "valid_mask",
]
