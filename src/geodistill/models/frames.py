"""Resample a sequence of hidden states along time: how the teacher's 1500 encoder positions meet a student
with fewer frames (the hidden loss, the teacher cache's pooled encoder states, the report)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from geodistill.errors import GeodistillError

ALIGN_METHODS = ("pool", "interpolate")


def align_frames(states: Tensor, n_frames: int, method: str = "pool") -> Tensor:
    """Resample teacher encoder states (B, T, D) along time to (B, n_frames, D).

    ``pool`` averages windows: kernel = stride = T / n_frames when that is whole (1500 -> 500 is k = s = 3,
    the seed's 3:1), else adaptive average pooling (overlapping windows); it only shrinks.
    ``interpolate`` is linear interpolation along time (half-pixel centres), shrinking or growing.
    Equal counts return ``states`` unchanged.
    """
    if method not in ALIGN_METHODS:
        raise GeodistillError(f"loss.encoder_align: must be one of {ALIGN_METHODS}, got {method!r}")
    if states.dim() != 3:
        raise GeodistillError(f"align_frames: expected states (B, T, D), got {tuple(states.shape)}")
    n_in = states.shape[1]
    if n_frames < 1:
        raise GeodistillError(f"align_frames: n_frames must be >= 1, got {n_frames}")
    if n_frames == n_in:
        return states
    x = states.transpose(1, 2)  # (B, D, T): the 1-D ops work on the last dim
    if method == "interpolate":
        out = F.interpolate(x, size=n_frames, mode="linear", align_corners=False)
    elif n_frames > n_in:
        raise GeodistillError(
            f"align_frames: pooling cannot stretch {n_in} teacher frames to {n_frames}; "
            "use loss.encoder_align=interpolate"
        )
    elif n_in % n_frames == 0:
        out = F.avg_pool1d(x, kernel_size=n_in // n_frames, stride=n_in // n_frames)
    else:
        out = F.adaptive_avg_pool1d(x, n_frames)
    return out.transpose(1, 2)
