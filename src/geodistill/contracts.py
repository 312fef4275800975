"""What flows between the data, the teacher, the student and the loss: typed, in one place.

    collator -> Batch -> TeacherProvider(batch) -> TeacherOutputs ─┐
                     └-> Student(batch, teacher outputs) -> ModelStates ─┴-> DistillationLoss

Every package may import this module and it imports none of them, so the losses never depend on the
teacher package (or the other way round). A new student family (dynamic audio context, CTC) or a new
teacher provider (online model, stored cache) plugs in by meeting these contracts; the training loop
never looks behind them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NotRequired, Protocol, Self, TypedDict, runtime_checkable

import torch
from torch import Tensor, nn

IGNORE_INDEX = -100  # label value of positions that carry no loss (prompt tokens, padding); torch's default

# {decoder layer: (keys, values)}, each (B, heads, T_enc, head_dim): a layer's cross-attention projections
# of the encoder states (its ``encoder_attn.k_proj`` / ``v_proj`` outputs, split into heads).
CrossKV = dict[int, tuple[Tensor, Tensor]]

StudentFamily = str  # a key of geodistill.students.FAMILIES ("seq2seq", "ctc", ...)


class Batch(TypedDict):
    """What ``geodistill.data.WhisperCollator`` returns (B utterances, L = longest prompt + text; each row
    has its own prompt: language, task, timestamps). Token ids are in the *student's* vocabulary."""

    ids: list[str]  # (B,) utterance ids
    decoder_input_ids: Tensor  # (B, L) prompt + text, right-padded with the pad id
    labels: Tensor  # (B, L) next-token targets, IGNORE_INDEX on prompt and padding
    audio_seconds: Tensor  # (B,) clip lengths
    input_features: NotRequired[Tensor]  # (B, n_mels, frames) log-Mel; absent when a cache replaces it
    teacher_features: NotRequired[Tensor]  # (B, n_mels_t, 3000) the teacher's, when its Mel count differs
    audio: NotRequired[list]  # raw waveforms, when the samples carry them
    ctc_labels: NotRequired[Tensor]  # (B, U) character ids, zero-padded (CTC students' CTCCollator)
    ctc_label_lengths: NotRequired[Tensor]  # (B,) characters per utterance


@dataclass
class TeacherOutputs:
    """One batch's teacher signal, computed online or read from a cache (fields the source lacks are None)."""

    logits: Tensor | None = None  # (B, L, V) full-vocabulary logits, or None when only top-k exists
    topk_values: Tensor | None = None  # (B, L, k) largest raw logits
    topk_indices: Tensor | None = None  # (B, L, k) their token ids
    logsumexp: Tensor | None = None  # (B, L) log-sum-exp of the full raw logits / the temperature below
    decoder_hidden: Tensor | None = None  # (B, L, D_t) last decoder layer, after its layer norm
    encoder_hidden: Tensor | None = None  # (B, T_t, D_t) last encoder layer, after its layer norm
    cross_kv: CrossKV | None = None  # by *teacher* decoder layer: its cross-attention keys/values
    decoder_layers: dict[int, Tensor] | None = None  # by teacher decoder layer: its output (B, L, D_t)
    logsumexp_temperature: float = 1.0  # logsumexp = logsumexp(z_full / T) at this T (exact top-k KL at T)
    # (B, L, E) raw logits of the teacher ids ``extra_ids`` (a cache stores them for the ids a smaller
    # student vocabulary lacks, large-v3's <|yue|>, so the KL over the shared ids stays exact)
    extra_logits: Tensor | None = None
    extra_ids: tuple[int, ...] = ()

    def to(self, device: torch.device) -> TeacherOutputs:
        """The same outputs on ``device`` (a teacher kept on the CPU feeds a student on the GPU)."""
        return type(self)(**{k: _moved(v, device) for k, v in self.__dict__.items()})

    def at(self, positions: Tensor) -> TeacherOutputs:
        """The per-token fields at ``positions`` ((B, L) bool) only, packed into (1, N, ...) in row order;
        encoder states and cross-attention keys/values are per utterance and stay as they are."""
        packed = {
            k: v[positions][None] if k in TOKEN_FIELDS and v is not None else v
            for k, v in self.__dict__.items()
        }
        if self.decoder_layers is not None:
            packed["decoder_layers"] = {j: h[positions][None] for j, h in self.decoder_layers.items()}
        return type(self)(**packed)


TOKEN_FIELDS = (
    "logits",
    "topk_values",
    "topk_indices",
    "logsumexp",
    "decoder_hidden",
    "extra_logits",
)  # (B, L, ...)


def _moved(value, device: torch.device):
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: _moved(v, device) for k, v in value.items()}
    if isinstance(value, tuple):  # cross-attention keys/values, or ids (extra_ids) that stay as they are
        return tuple(_moved(t, device) for t in value)
    return value


@dataclass
class ModelStates:
    """A model's forward on one batch: what the losses compare (student) or what a teacher forward gave.

    A student hands these to the loss with its hidden states already projected to the teacher's width.
    """

    logits: Tensor  # (B, L, V) decoder logits, or (1, N, V) packed on label positions
    decoder_hidden: Tensor | None = None  # (B, L, D) last decoder states (or packed like the logits)
    encoder_hidden: Tensor | None = None  # (B, T, D) last encoder states
    cross_kv: CrossKV = field(default_factory=dict)  # layers asked for with ``keep_cross_kv`` (else empty)
    # {layer: (B, L, D)} each decoder layer's output (loss.hidden_layers: all). A student's are keyed by the
    # *teacher* layer each one is compared with, already projected to the teacher's width.
    decoder_layers: dict[int, Tensor] | None = None
    encoder_mask: Tensor | None = None  # (B, T) True on frames that hold audio; None = every frame


@dataclass(frozen=True)
class TeacherOffer:
    """What a teacher provider hands over besides logits, known before the first batch."""

    reads_features: bool  # it runs on batch["input_features"] (an online teacher); a cache does not
    encoder_states: bool  # its outputs carry the teacher's last encoder states
    encoder_pool: int | None = None  # those states are average-pooled by this factor (None = not pooled)
    cross_kv_layers: tuple[int, ...] = ()  # teacher decoder layers whose cross-attention K/V it hands over
    every_decoder_layer: bool = False  # its outputs carry each decoder layer's states (decoder_layers)


@runtime_checkable
class TeacherProvider(Protocol):
    """A frozen teacher's outputs per batch (``OnlineTeacher``, or the reader of ``teacher.cache``)."""

    @property
    def offer(self) -> TeacherOffer: ...  # an attribute or a property

    def __call__(self, batch: Batch) -> TeacherOutputs: ...


class Objective(Protocol):
    """A family's training loss (an ``nn.Module``, e.g. ``DistillationLoss``): its student calls it on one
    micro-batch with the arguments its ``forward`` takes; the loop moves it to the run's device, calls
    ``update`` after each optimiser step and keeps its state in the checkpoint."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

    def to(self, device: torch.device) -> Self: ...

    def update(self, step: int, total_steps: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> Any: ...


@runtime_checkable
class Student(Protocol):
    """A trainable student: one forward per batch, its loss on a micro-batch, and how it is saved.

    ``trainable`` holds every parameter the optimiser and the checkpoint see (adapters, projectors).
    ``family`` names its entry in ``geodistill.students.FAMILIES``.
    """

    family: ClassVar[StudentFamily]
    processor: Any  # its WhisperProcessor (feature extractor + tokenizer)

    @property
    def trainable(self) -> nn.Module: ...

    @property
    def decoding_model(self) -> nn.Module: ...  # what validation decodes with

    def __call__(self, batch: Batch, teacher: TeacherOutputs, positions: Tensor) -> ModelStates: ...

    def loss(
        self, loss_fn: Objective, batch: Batch, teacher: TeacherOutputs, step: int, total_steps: int
    ) -> tuple[Tensor, dict]: ...  # (total, {part: value}) of ``loss_fn`` (its family's objective)

    def save(self, out: Path, extra: dict | None = None) -> None: ...
