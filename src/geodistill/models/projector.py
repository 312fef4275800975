"""RiemannianProjector: map student hidden states onto the teacher's unit sphere."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodistill.errors import GeodistillError


class RiemannianProjector(nn.Module):
    """Linear(in_dim -> out_dim) then L2-normalisation of the last dim: (..., in_dim) -> (..., out_dim).

    With in_dim == out_dim it starts as the identity (weight = I, bias = 0), so a layer-copied student
    begins with its own directions untouched; otherwise nn.Linear's default init.
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise GeodistillError(f"RiemannianProjector: dimensions must be >= 1, got {in_dim} -> {out_dim}")
        self.linear = nn.Linear(in_dim, out_dim)
        if in_dim == out_dim:
            with torch.no_grad():
                self.linear.weight.copy_(torch.eye(in_dim))
                self.linear.bias.zero_()

    def forward(self, states: Tensor) -> Tensor:
        """states (..., in_dim) -> unit vectors (..., out_dim) in the input's dtype."""
        projected = self.linear(states)
        # Normalise in fp32: under fp16 autocast the norm's eps (1e-12) would underflow to 0.
        return F.normalize(projected.float(), dim=-1).to(projected.dtype)
