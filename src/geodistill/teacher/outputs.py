"""The online teacher: a frozen Whisper run at every step, behind the ``TeacherProvider`` contract.

Any provider is a callable ``teacher(batch) -> TeacherOutputs`` with an ``offer`` saying what it hands
over; the loop never looks behind it, so a cache of stored outputs (``geodistill.teacher.cache``)
swaps in without touching the loop.
"""

from __future__ import annotations

import torch
from transformers import WhisperForConditionalGeneration

from geodistill.contracts import Batch, CrossKV, ModelStates, TeacherOffer, TeacherOutputs
from geodistill.models.forward import forward_states

__all__ = [
    "CrossKV",
    "ModelStates",
    "OnlineTeacher",
    "OnlineTeacherEncoder",
    "NoTeacherSignal",
    "TeacherOutputs",
    "forward_states",
]


class OnlineTeacher:
    """A frozen teacher run at every step (no grad, eval mode, on its own device and dtype).

    ``cross_kv_layers``: teacher decoder layers whose cross-attention keys/values to hand on (a copy
    student with those layers' projections frozen reuses them instead of recomputing them).
    """

    def __init__(
        self,
        model: WhisperForConditionalGeneration,
        cross_kv_layers: tuple[int, ...] = (),
        every_decoder_layer: bool = False,
    ):
        self.model = model.eval().requires_grad_(False)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.offer = TeacherOffer(
            reads_features=True,
            encoder_states=True,
            cross_kv_layers=tuple(cross_kv_layers),
            every_decoder_layer=every_decoder_layer,
        )

    @torch.no_grad()
    def __call__(self, batch: Batch) -> TeacherOutputs:
        feats = batch["input_features"].to(self.device, self.dtype)
        dec = batch["decoder_input_ids"].to(self.device)
        offer = self.offer
        out = forward_states(
            self.model,
            dec,
            input_features=feats,
            keep_cross_kv=offer.cross_kv_layers,
            every_layer=offer.every_decoder_layer,
        )
        return TeacherOutputs(
            logits=out.logits,
            decoder_hidden=out.decoder_hidden,
            encoder_hidden=out.encoder_hidden,
            cross_kv=out.cross_kv or None,
            decoder_layers=out.decoder_layers,
        )


class OnlineTeacherEncoder:
    """The frozen teacher's encoder only, run at every step: its last encoder states and nothing else.

    For students that compare no token outputs (the CTC student): the decoder and its full-vocabulary
    logits are skipped. The states equal ``OnlineTeacher``'s ``encoder_hidden`` (same model, same input).
    """

    def __init__(self, model: WhisperForConditionalGeneration):
        self.model = model.eval().requires_grad_(False)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.offer = TeacherOffer(reads_features=True, encoder_states=True)

    @torch.no_grad()
    def __call__(self, batch: Batch) -> TeacherOutputs:
        feats = batch["input_features"].to(self.device, self.dtype)
        return TeacherOutputs(encoder_hidden=self.model.model.encoder(feats).last_hidden_state)


class NoTeacherSignal:
    """For a run none of whose losses reads the teacher's outputs (a CTC student with no hidden loss: its
    teacher gives the initial weights only): empty outputs, and the teacher is not run at all."""

    offer = TeacherOffer(reads_features=False, encoder_states=False)

    def __call__(self, batch: Batch) -> TeacherOutputs:
        return TeacherOutputs()
