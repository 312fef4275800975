"""Speculative decoding: the teacher generates, a student drafts (transformers' assisted generation).

The transcript is the teacher's greedy transcript, token for token: the teacher checks every drafted
token and keeps only those it would have chosen itself; the student only saves teacher decoder passes.
A student that shares the teacher's (frozen, copied) encoder runs as a decoder-only assistant
(``WhisperForCausalLM`` fed the teacher's encoder outputs), so no second encoder pass is paid; any other
student with the same tokenizer runs as an encoder-decoder assistant. transformers' assisted generation
decodes one utterance at a time (batch size 1).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from transformers import WhisperForCausalLM

from geodistill.errors import GeodistillError
from geodistill.models import load_whisper

ACCEPTANCE = (
    "drafted tokens the teacher kept: (generated tokens - teacher decoder passes) / assistant decoder "
    "passes (each teacher pass keeps the accepted drafts plus one token of its own)"
)


@dataclass
class AssistStats:
    """Counts over every assisted ``generate`` call so far."""

    drafted: int = 0  # assistant decoder passes (one drafted token each)
    teacher_passes: int = 0  # teacher decoder passes (each verifies a block of drafts)
    generated: int = 0  # tokens in the returned transcripts (batch size 1: no padding)

    def acceptance(self) -> float | None:
        """Share of drafted tokens the teacher kept (None before any draft)."""
        if self.drafted == 0:
            return None
        return max(0, self.generated - self.teacher_passes) / self.drafted


def shares_encoder(teacher, student) -> bool:
    """Whether ``student``'s encoder is the teacher's, weight for weight (a frozen-encoder copy student)."""
    t, s = teacher.model.encoder.state_dict(), student.model.encoder.state_dict()
    return t.keys() == s.keys() and all(torch.equal(t[k], s[k].to(t[k].device, t[k].dtype)) for k in t)


def decoder_only(student):
    """``WhisperForCausalLM`` holding exactly ``student``'s decoder and output projection (B, T) -> logits."""

    causal = WhisperForCausalLM(copy.deepcopy(student.config))
    keep = {
        k: v
        for k, v in student.state_dict().items()
        if k.startswith("model.decoder.") or k == "proj_out.weight"
    }
    causal.load_state_dict(keep, strict=True)
    causal.generation_config = copy.deepcopy(student.generation_config)
    return causal.to(student.device, student.dtype).eval()


def check_tokenizers(teacher_processor, student_processor, spec: str) -> None:
    """Refuse an assistant whose token ids mean something else (one line)."""
    t, s = teacher_processor.tokenizer.get_vocab(), student_processor.tokenizer.get_vocab()
    if t != s:
        raise GeodistillError(
            f"--assistant {spec}: its tokenizer differs from the teacher's ({len(s)} vs {len(t)} tokens); "
            "assisted decoding needs identical token ids"
        )


class AssistedWhisper:
    """The teacher, whose ``generate`` drafts with ``assistant``; every other attribute is the teacher's."""

    def __init__(self, teacher, assistant, kind: str, spec: str):
        self.teacher, self.assistant, self.kind, self.spec = teacher, assistant, kind, spec
        self.stats = AssistStats()

    def __getattr__(self, name: str):
        return getattr(self.teacher, name)

    def __call__(self, *args, **kwargs):  # a forward pass is the teacher's (the no-speech probability)
        return self.teacher(*args, **kwargs)

    @contextlib.contextmanager
    def _counting(self) -> Iterator[None]:
        def on_teacher(*_):
            self.stats.teacher_passes += 1

        def on_assistant(*_):
            self.stats.drafted += 1

        drafter = self.assistant if self.kind == "decoder-only" else self.assistant.model.decoder
        hooks = [
            self.teacher.model.decoder.register_forward_hook(on_teacher),
            drafter.register_forward_hook(on_assistant),
        ]
        try:
            yield
        finally:
            for h in hooks:
                h.remove()

    def generate(self, input_features: torch.Tensor, **kwargs) -> torch.Tensor:
        """The teacher's ids (1, T) for ``input_features`` (1, n_mels, frames), drafted by the assistant."""
        if input_features.shape[0] != 1:
            raise GeodistillError(
                f"--assistant decodes one utterance at a time (transformers' assisted generation); "
                f"got a batch of {input_features.shape[0]}: use --batch-size 1"
            )
        if kwargs.get("num_beams", 1) != 1:
            raise GeodistillError("--assistant needs --beam-size 1 (assisted generation is greedy)")
        with self._counting():
            ids = self.teacher.generate(input_features, assistant_model=self.assistant, **kwargs)
        self.stats.generated += int(ids.shape[-1])
        return ids

    def fields(self) -> dict:
        """eval.json fields describing the assistant and how often its drafts were kept."""
        return {
            "assistant": self.spec,
            "assistant_kind": self.kind,
            "assistant_acceptance": self.stats.acceptance(),
            "assistant_drafted": self.stats.drafted,
            "teacher_decoder_passes": self.stats.teacher_passes,
            "acceptance_definition": ACCEPTANCE,
        }


def with_assistant(teacher, teacher_processor, spec: str) -> AssistedWhisper:
    """``teacher`` wrapped to draft with the student ``spec`` (decoder-only when it shares the encoder)."""

    student, processor = load_whisper(str(spec), device=str(teacher.device), dtype=teacher.dtype)
    check_tokenizers(teacher_processor, processor, str(spec))
    if shares_encoder(teacher, student):
        return AssistedWhisper(teacher, decoder_only(student), "decoder-only", str(spec))
    return AssistedWhisper(teacher, student.eval(), "encoder-decoder", str(spec))
