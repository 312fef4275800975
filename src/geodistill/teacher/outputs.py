"""What the distillation loop needs from a teacher, and the online (frozen model) provider of it.

Any provider is a callable ``teacher(batch) -> TeacherOutputs``; the loop never looks behind it, so a
cache of stored outputs (``geodistill.teacher.cache``) swaps in without touching the loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import WhisperForConditionalGeneration


@dataclass
class TeacherOutputs:
    logits: torch.Tensor | None = None  # (B, L, V) full-vocabulary logits, or None when only top-k exists
    topk_values: torch.Tensor | None = None  # (B, L, k) largest raw logits
    topk_indices: torch.Tensor | None = None  # (B, L, k) their token ids
    logsumexp: torch.Tensor | None = None  # (B, L) log-sum-exp of the full raw logits (tail mass)
    decoder_hidden: torch.Tensor | None = None  # (B, L, D_t) last decoder layer, after its layer norm
    encoder_hidden: torch.Tensor | None = None  # (B, T_t, D_t) last encoder layer, after its layer norm

    def to(self, device: torch.device) -> TeacherOutputs:
        """The same outputs on ``device`` (a teacher kept on the CPU feeds a student on the GPU)."""
        moved = {
            k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in self.__dict__.items()
        }
        return TeacherOutputs(**moved)


@dataclass
class ModelStates:
    logits: torch.Tensor  # (B, L, V)
    decoder_hidden: torch.Tensor  # (B, L, D)
    encoder_hidden: torch.Tensor  # (B, T, D)


def forward_states(
    model: WhisperForConditionalGeneration,
    decoder_input_ids: torch.Tensor,
    input_features: torch.Tensor | None = None,
    encoder_hidden: torch.Tensor | None = None,
) -> ModelStates:
    """Teacher-forced forward returning logits and the last encoder/decoder states.

    Give ``encoder_hidden`` (B, T, D) to skip the encoder (a frozen encoder shared with the teacher,
    or states read from a cache); otherwise ``input_features`` (B, n_mels, 3000) runs it.
    """
    whisper = model.model
    if encoder_hidden is None:
        encoder_hidden = whisper.encoder(input_features).last_hidden_state
    dec = whisper.decoder(input_ids=decoder_input_ids, encoder_hidden_states=encoder_hidden, use_cache=False)
    hidden = dec.last_hidden_state
    return ModelStates(logits=model.proj_out(hidden), decoder_hidden=hidden, encoder_hidden=encoder_hidden)


class OnlineTeacher:
    """A frozen teacher run at every step (no grad, eval mode, on its own device and dtype)."""

    def __init__(self, model: WhisperForConditionalGeneration):
        self.model = model.eval().requires_grad_(False)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    @torch.no_grad()
    def __call__(self, batch: dict) -> TeacherOutputs:
        feats = batch["input_features"].to(self.device, self.dtype)
        out = forward_states(self.model, batch["decoder_input_ids"].to(self.device), input_features=feats)
        return TeacherOutputs(
            logits=out.logits, decoder_hidden=out.decoder_hidden, encoder_hidden=out.encoder_hidden
        )
