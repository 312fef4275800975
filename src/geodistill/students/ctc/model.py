"""The CTC student: a CNN + Transformer encoder with a character head, no decoder (``student.init: ctc``).

    log-Mel (B, n_mels, F) -> conv1 (k 3, s 1) -> gelu -> conv2 (k 3, s 2) -> gelu -> + sinusoidal positions
      -> N x TransformerEncoderLayer (pre-norm) -> LayerNorm -> [Conv1d(k 3, s 3) when downsample 3]
      -> Linear -> log-softmax over its units (blank 0; characters or BPE pieces: ``units.py``)

The front end and blocks are Whisper's encoder's own shapes, so ``init_from_teacher`` copies the teacher's
convolutions, positions, first N layers and final norm (widths must match). Input is variable-length:
features are cut to the batch's longest clip (no 30-s padding), each clip's frames beyond its own length
are masked as attention keys and excluded from the loss. A 2-s clip gives 100 frames (downsample 1) or 33
(downsample 3). Decoding is greedy: collapse repeats, drop blanks (``ctc_greedy``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import WhisperProcessor

from geodistill.config import Config, ConfigError
from geodistill.contracts import Batch, ModelStates, Objective, StudentFamily, TeacherOutputs
from geodistill.data.audio import SAMPLE_RATE
from geodistill.data.bad import BadSamples
from geodistill.errors import GeodistillError, ModelLoadError
from geodistill.models.context import CONV_STRIDE, clip_frames
from geodistill.models.loading import (
    load_reason,
    model_dir,
    resolve_device,
    weights_errors,
)
from geodistill.models.projector import RiemannianProjector
from geodistill.outdir import replace_folder
from geodistill.students.ctc.loss import CHARS, frames_needed
from geodistill.students.ctc.units import CharUnits, Units, load_units, units_text

if TYPE_CHECKING:
    from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperEncoderLayer

log = logging.getLogger("geodistill")
MAX_POSITIONS = 1500  # 30 s of 20-ms positions, as Whisper's encoder


CTC_CONFIG = "ctc_config.json"  # what a saved CTC student holds instead of config.json


@dataclass(frozen=True)
class CTCShape:
    """The architecture, saved as ctc_config.json next to the weights."""

    n_mels: int = 80
    d_model: int = 192
    layers: int = 4
    heads: int = 3
    ffn: int = 768
    downsample: int = 1
    dropout: float = 0.1
    vocab: tuple[str, ...] = CHARS  # id -> unit; id 0 the blank
    units: str = "chars"  # student.ctc.vocab: chars | bpe:N (a BPE student keeps units.model beside it)


def sinusoids(length: int, channels: int) -> Tensor:
    """Whisper's fixed position table (length, channels): sin then cos over log-spaced timescales."""
    inc = math.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2, dtype=torch.float32))
    t = torch.arange(length, dtype=torch.float32)[:, None] * inv[None]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


def clip_positions(n_samples: int) -> int:
    """Encoder positions (20 ms) of a clip of ``n_samples`` 16-kHz samples: ceil(Mel frames / 2)."""
    return math.ceil(clip_frames(n_samples) / CONV_STRIDE)


def output_frames(seconds: float, downsample: int) -> int:
    """Output frames of a clip of ``seconds``: its ``clip_positions``, // downsample (at least 1)."""
    return max(clip_positions(round(float(seconds) * SAMPLE_RATE)) // downsample, 1)


class CTCModel(nn.Module):
    """features (B, n_mels, F), positions (B,) -> (log-probs (B, T, V), states (B, T, d), lengths (B,))."""

    positions: Tensor  # (MAX_POSITIONS, d) buffer: Whisper's sinusoids

    def __init__(self, shape: CTCShape, units: Units | None = None):
        super().__init__()
        s, d = shape, shape.d_model
        self.shape = shape
        # how text becomes unit ids (training) and back; None only for a BPE shape built without its model
        self.units: Units | None = CharUnits() if units is None and s.units == "chars" else units
        self.conv1 = nn.Conv1d(s.n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=CONV_STRIDE, padding=1)
        self.register_buffer("positions", sinusoids(MAX_POSITIONS, d))
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, s.heads, s.ffn, s.dropout, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(s.layers)
        )
        self.norm = nn.LayerNorm(d)
        self.down = nn.Conv1d(d, d, 3, stride=3) if s.downsample == 3 else None
        self.head = nn.Linear(d, len(s.vocab))
        self.frozen: list[nn.Module] = []

    def freeze(self, n_layers: int) -> None:
        """Freeze the conv front end and the first ``n_layers`` blocks: no gradient, and kept in eval mode
        (no dropout) by ``train()``. The positions are a fixed buffer already."""
        self.frozen = [self.conv1, self.conv2, *self.layers[:n_layers]]
        for module in self.frozen:
            module.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> CTCModel:
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.head.weight.dtype

    def forward(self, features: Tensor, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """features (B, n_mels, F) with F even (<= 3000); positions (B,) each clip's conv2 positions.
        Returns log-probs (B, T, V), states before the head (B, T, d), output lengths (B,)."""
        x = nn.functional.gelu(self.conv1(features))
        x = nn.functional.gelu(self.conv2(x)).transpose(1, 2)  # (B, P, d)
        p = x.shape[1]
        if p > MAX_POSITIONS or p < self.shape.downsample:
            low = 2 * self.shape.downsample
            raise GeodistillError(f"input_features: {features.shape[-1]} Mel frames; need {low}..3000")
        x = x + self.positions[:p]
        pad = torch.arange(p, device=x.device)[None] >= positions.to(x.device)[:, None]  # (B, P)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad)
        x = self.norm(x)
        lengths = positions.to(x.device).clamp(max=p)
        if self.down is not None:
            x = self.down(x.transpose(1, 2)).transpose(1, 2)
            lengths = (lengths // 3).clamp(min=1, max=x.shape[1])
        return torch.log_softmax(self.head(x).float(), dim=-1), x, lengths


def copy_from_teacher(model: CTCModel, encoder: WhisperEncoder) -> None:
    """Copy a Whisper encoder's convs, positions, first ``layers`` blocks and final norm into ``model``.

    Whisper's attention equals nn.MultiheadAttention with packed q/k/v (k has no bias: zeros here).
    Raises a one-line error when a width differs.
    """
    s, c = model.shape, encoder.config
    theirs = (c.num_mel_bins, c.d_model, c.encoder_attention_heads, c.encoder_ffn_dim)
    if (s.n_mels, s.d_model, s.heads, s.ffn) != theirs or s.layers > c.encoder_layers:
        raise GeodistillError(
            "student.ctc.init_from_teacher: needs n_mels, d_model, heads, ffn = the teacher's "
            f"{theirs} and layers <= {c.encoder_layers}, got {(s.n_mels, s.d_model, s.heads, s.ffn)} "
            f"and {s.layers} layers"
        )
    with torch.no_grad():
        model.conv1.load_state_dict(encoder.conv1.state_dict())
        model.conv2.load_state_dict(encoder.conv2.state_dict())
        model.positions.copy_(encoder.embed_positions.weight[:MAX_POSITIONS])
        model.norm.load_state_dict(encoder.layer_norm.state_dict())
        for mine, theirs_layer in zip(model.layers, encoder.layers, strict=False):  # ModuleLists: untyped
            _copy_layer(cast(nn.TransformerEncoderLayer, mine), cast("WhisperEncoderLayer", theirs_layer))


def _copy_layer(mine: nn.TransformerEncoderLayer, layer: WhisperEncoderLayer) -> None:
    a = layer.self_attn
    mine.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
    k_bias = torch.zeros_like(a.q_proj.bias)  # Whisper's k_proj has no bias
    mine.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, k_bias, a.v_proj.bias]))
    mine.self_attn.out_proj.load_state_dict(a.out_proj.state_dict())
    mine.norm1.load_state_dict(layer.self_attn_layer_norm.state_dict())
    mine.norm2.load_state_dict(layer.final_layer_norm.state_dict())
    mine.linear1.load_state_dict(layer.fc1.state_dict())
    mine.linear2.load_state_dict(layer.fc2.state_dict())


def ctc_greedy(log_probs: Tensor, lengths: Tensor, vocab: tuple[str, ...] = CHARS) -> list[str]:
    """Best path per utterance: argmax (B, T, V) over each one's first ``lengths`` frames, collapse repeats,
    drop blanks; "▁" read as a space, runs of spaces made one, edges stripped (``units_text``)."""
    best = log_probs.argmax(-1).cpu()
    return [
        units_text(torch.unique_consecutive(best[b, : int(n)]).tolist(), vocab)
        for b, n in enumerate(lengths.tolist())
    ]


def encoder_macs(shape: CTCShape, seconds: float) -> int:
    """Multiply-accumulates of one forward over a clip of ``seconds`` (convs, blocks incl. attention
    scores, downsampling, head); norms and activations left out (as for the teacher count)."""
    p, d = math.ceil(seconds * 50), shape.d_model
    conv = 2 * p * shape.n_mels * d * 3 + p * d * d * 3
    block = p * (4 * d * d + 2 * d * shape.ffn) + 2 * p * p * d
    down = (p // 3) * d * d * 3 if shape.downsample == 3 else 0
    return conv + shape.layers * block + down + (p // shape.downsample) * d * len(shape.vocab)


def whisper_encoder_macs(n_mels: int, d: int, layers: int, ffn: int) -> int:
    """The same count for a Whisper encoder, which always runs over its 30-s window (1500 positions)."""
    shape = CTCShape(n_mels=n_mels, d_model=d, layers=layers, ffn=ffn, vocab=())
    return encoder_macs(shape, 30.0)


def encode_clips(model: CTCModel, features: Tensor, seconds: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``model`` over 30-s features (B, n_mels, 3000) cut to the longest of the clips of ``seconds`` (B,)."""
    positions = torch.tensor([clip_positions(round(float(s) * SAMPLE_RATE)) for s in seconds])
    cut = min(CONV_STRIDE * int(positions.max()), features.shape[-1])
    return model(features[..., :cut].to(model.device, model.dtype), positions)


@dataclass
class CTCStudent:
    """A CTC student ready to train: ``model`` is saved, ``projectors["encoder"]`` maps its width to the
    teacher's for the hidden loss, ``processor`` computes its log-Mel features (the teacher's)."""

    family: ClassVar[StudentFamily] = "ctc"
    model: CTCModel
    processor: Any  # its WhisperProcessor (the teacher's)
    projectors: nn.ModuleDict
    teacher_name: str

    @property
    def trainable(self) -> nn.ModuleDict:
        return nn.ModuleDict({"student": self.model, "projectors": self.projectors})

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def decoding_model(self) -> CTCModel:
        """What validation decodes with."""
        return self.model

    def loss(
        self, loss_fn: Objective, batch: Batch, teacher: TeacherOutputs, step: int, total_steps: int
    ) -> tuple[Tensor, dict]:
        """``loss_fn`` (a ``CTCDistillationLoss``): the frames against the characters and the teacher's
        encoder states."""
        states = self(batch, teacher, None)
        targets, lengths = batch["ctc_labels"].to(self.device), batch["ctc_label_lengths"]
        return loss_fn(states, teacher, targets, lengths, step=step, total_steps=total_steps)

    def encode(self, features: Tensor, seconds: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """features (B, n_mels, 3000) cut to the longest clip of ``seconds`` (B,) -> ``CTCModel`` outputs."""
        return encode_clips(self.model, features, seconds)

    def __call__(self, batch: Batch, teacher: TeacherOutputs, positions: Tensor | None = None) -> ModelStates:
        """log-probs (B, T, V) as logits, projected states (B, T, D_t), encoder_mask (B, T) on real frames.
        ``teacher`` and ``positions`` (token positions) are unused: there are no tokens."""
        log_probs, states, lengths = self.encode(batch["input_features"], batch["audio_seconds"])
        mask = torch.arange(log_probs.shape[1], device=lengths.device)[None] < lengths[:, None]
        proj = self.projectors
        return ModelStates(
            logits=log_probs,
            encoder_hidden=proj["encoder"](states) if "encoder" in proj else None,
            encoder_mask=mask,
        )

    def save(self, out: Path, extra: dict | None = None) -> None:
        """model.safetensors + ctc_config.json (shape and vocabulary) + the feature extractor's processor +
        projector.safetensors + geodistill.json; written to a temp folder and swapped in (a failed write
        removes the temp folder and leaves ``out`` as it was)."""
        replace_folder(out, lambda tmp: self._write(tmp, extra), "the student")

    def _write(self, tmp: Path, extra: dict | None) -> None:
        """Every file of ``save`` into the new folder ``tmp``."""
        write_ctc(self.model, self.processor, tmp)
        if len(self.projectors):
            save_file(_plain(self.projectors.state_dict()), str(tmp / "projector.safetensors"))
        record = {"family": "ctc", "teacher": self.teacher_name, **(extra or {})}
        (tmp / "geodistill.json").write_text(json.dumps(record, indent=2))


def _plain(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def write_ctc(model: CTCModel, processor, folder: Path) -> None:
    """model.safetensors, ctc_config.json (shape and vocabulary), vocab.json, units.model (BPE) and the
    processor's files (preprocessor_config.json included) into the existing folder ``folder``: what
    ``load_ctc`` reads."""
    if model.units is None:
        raise GeodistillError(f"a {model.shape.units} CTC student without its BPE model cannot be saved")
    model.units.save(folder)
    save_file(_plain(model.state_dict()), str(folder / "model.safetensors"))
    (folder / CTC_CONFIG).write_text(json.dumps(asdict(model.shape), indent=2))
    (folder / "vocab.json").write_text(json.dumps(list(model.shape.vocab)))
    processor.save_pretrained(str(folder))
    processor.feature_extractor.save_pretrained(str(folder))  # transformers 5 folds it into processor_config


def load_ctc(spec: str | Path, device: str = "cpu") -> tuple[CTCModel, WhisperProcessor]:
    """(model in eval mode on ``device``, processor) of a saved CTC student: the folder ``CTCStudent.save``
    or ``geodistill export`` wrote, or a run folder (its ``best/``, else ``adapter_final/``).

    ``device``: cpu, cuda, cuda:N, mps or auto. Raises a one-line ModelLoadError naming the folder when it
    holds no CTC student or its files do not load.
    """
    folder = model_dir(Path(spec).expanduser())
    if not (folder / CTC_CONFIG).is_file():
        raise ModelLoadError(
            f"could not load '{spec}': no {CTC_CONFIG} in {folder} (not a saved CTC student)"
        )
    dev = resolve_device(device)
    try:
        raw = json.loads((folder / CTC_CONFIG).read_text(encoding="utf-8"))
        shape = CTCShape(**{**raw, "vocab": tuple(raw["vocab"])})
        model = CTCModel(shape, load_units(shape.units, shape.vocab, folder))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        processor = WhisperProcessor.from_pretrained(str(folder), local_files_only=True)
    except weights_errors() + (TypeError, KeyError, ConfigError) as exc:
        raise ModelLoadError(
            f"could not load '{spec}': {folder} is not a loadable CTC student ({load_reason(exc)})"
        ) from exc
    return model.to(dev).eval(), processor


class CTCCollator:
    """Whisper's batch + unit targets: "ctc_labels" (B, U) zero-padded, "ctc_label_lengths" (B,).

    A sample whose clip has fewer output frames than its units need (CTC impossible), or whose
    transcript has no character of the vocabulary, is dropped and written to ``bad``; characters outside
    the vocabulary are dropped from the target and logged (once per character).
    """

    def __init__(self, base, tokenizer, downsample: int, bad: BadSamples, units: Units | None = None):
        self.base, self.tokenizer, self.downsample, self.bad = base, tokenizer, downsample, bad
        self.units = units or CharUnits()
        self.reported: set[str] = set()

    def targets(self, sample: dict) -> list[int] | None:
        """The sample's unit ids, or None (reported) when it cannot train a CTC model."""
        text = self.tokenizer.decode(sample["labels"], skip_special_tokens=True)
        ids, dropped = self.units.encode(text)
        for c in sorted(set(dropped) - self.reported):
            self.reported.add(c)
            log.warning("ctc labels: %r is not in the vocabulary; dropped (first in %s)", c, sample["id"])
        frames, need = output_frames(sample["audio_seconds"], self.downsample), frames_needed(ids)
        reason = None
        if not ids:
            reason = "transcript has no character of the CTC vocabulary"
        elif frames < need:
            reason = f"clip too short for CTC: {frames} output frames < {need} needed by {len(ids)} units"
        if reason is not None:
            self.bad.add(sample["id"], reason)
            return None
        return ids

    def __call__(self, samples) -> Batch:
        kept, labels = [], []
        for s in samples:
            ids = None if s is None else self.targets(s)
            if ids is not None:
                kept.append(s)
                labels.append(ids)
        batch = self.base(kept)
        width = max((len(x) for x in labels), default=0)
        padded = torch.zeros(len(labels), width, dtype=torch.long)
        for b, ids in enumerate(labels):
            padded[b, : len(ids)] = torch.tensor(ids)
        batch["ctc_labels"] = padded
        batch["ctc_label_lengths"] = torch.tensor([len(x) for x in labels], dtype=torch.long)
        return batch


def ctc_model(cfg: Config, teacher, n_mels: int, units: Units | None = None) -> CTCModel:
    """The CTC model ``student.ctc`` describes over ``units`` (characters when None), as training starts:
    random (from torch's generator), or with ``teacher``'s convs, positions, first blocks and final norm
    when ``init_from_teacher``."""
    c, units = cfg.student.ctc, units or CharUnits()
    shape = CTCShape(
        n_mels, c.d_model, c.layers, c.heads, c.ffn, c.downsample, c.dropout, units.vocab, units.spec
    )
    model = CTCModel(shape, units)
    if c.init_from_teacher:
        if teacher is None:
            raise GeodistillError("student.ctc.init_from_teacher: needs the teacher's weights (none loaded)")
        copy_from_teacher(model, teacher.model.encoder)
        if c.frozen_layers:
            model.freeze(c.frozen_layers)
    return model


def build_ctc_student(
    cfg: Config, teacher, processor, teacher_config: dict, device: torch.device, units: Units | None = None
) -> CTCStudent:
    """The configured CTC student over ``units`` on ``device``: random, or initialised from ``teacher``'s
    encoder."""
    c, lo = cfg.student.ctc, cfg.loss
    model = ctc_model(cfg, teacher, teacher_config["num_mel_bins"], units)
    projectors = nn.ModuleDict()
    if lo.hidden_active:
        projectors["encoder"] = RiemannianProjector(c.d_model, teacher_config["d_model"])
    if lo.kl_weight > 0:
        log.info("loss.kl_weight: not used by a ctc student (no decoder distribution to compare)")
    n = sum(p.numel() for p in model.parameters())
    k = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "ctc student: %s parameters (%s trained), %d output frames per second, %d units (%s)",
        f"{n:,}",
        f"{k:,}",
        50 // c.downsample,
        len(model.shape.vocab),
        model.shape.units,
    )
    return CTCStudent(model.to(device), processor, projectors.to(device), cfg.teacher)
