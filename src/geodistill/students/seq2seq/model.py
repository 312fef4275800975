"""The seq2seq Whisper student: a layer copy of the teacher or another pretrained Whisper, + LoRA and
one Riemannian projector per side the hidden-state loss compares.

``build_whisper_student(cfg, teacher, teacher_processor, device)`` builds it from the config;
``WhisperStudent(batch, teacher_outputs, positions)`` is one teacher-forced forward returning
``ModelStates`` with the hidden states already projected to the teacher's width.
"""

from __future__ import annotations

import copy
import json
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from transformers import WhisperForConditionalGeneration

from geodistill.config import Config
from geodistill.contracts import Batch, CrossKV, ModelStates, Objective, StudentFamily, TeacherOutputs
from geodistill.data.audio import SAMPLE_RATE
from geodistill.errors import GeodistillError
from geodistill.losses.kd import valid_mask
from geodistill.models import load_whisper
from geodistill.models.context import AudioContext, clip_frames, encode, jittered_frames, set_audio_context
from geodistill.models.forward import forward_states
from geodistill.models.lora import add_lora, parameter_counts
from geodistill.models.projector import RiemannianProjector
from geodistill.models.student import copy_layers, freeze, spaced_layers, token_map
from geodistill.models.trim import save_kept, trimmed_kept, untrim
from geodistill.models.vocab import VocabMap
from geodistill.outdir import replace_folder

if TYPE_CHECKING:
    from peft import PeftModel  # imported where LoRA is added (models.lora), not on every import

log = logging.getLogger("geodistill")


@dataclass
class WhisperStudent:
    """A Whisper student ready to train: ``model`` is what gets saved (a PeftModel when LoRA is on),
    ``whisper`` the Whisper inside it, ``projectors`` map its widths to the teacher's."""

    family: ClassVar[StudentFamily] = "seq2seq"
    model: PeftModel | WhisperForConditionalGeneration  # what gets saved
    whisper: WhisperForConditionalGeneration  # the student's Whisper (adapters inside when LoRA is on)
    processor: Any  # its WhisperProcessor (the teacher's tokenizer, or one ``vocab_map`` maps onto it)
    projectors: nn.ModuleDict  # "decoder"/"encoder" -> RiemannianProjector (student width -> teacher width)
    teacher_name: str  # recorded with every saved student
    shares_encoder: bool = False  # its encoder == the frozen teacher's: take the teacher's encoder states
    cross_kv: dict[int, int] = field(default_factory=dict)  # own decoder layer -> teacher layer whose
    # cross-attention keys/values it takes (see ``geodistill.students.seq2seq.sharing``)
    layer_map: dict[int, int] = field(default_factory=dict)  # hidden_layers all: own decoder layer ->
    # teacher layer its states are compared with (a copy: the one it came from)
    context: AudioContext = field(default_factory=AudioContext)  # what its encoder sees (full | dynamic)
    context_jitter: int = 0  # dynamic, training only: +- encoder positions of margin per batch
    seed: int = 0  # seeds the jitter (with the batch's ids, so a resumed run draws the same contexts)
    # a large-v3 / turbo teacher over a smaller multilingual student: student ids -> teacher ids (the teacher
    # provider is wrapped in ``teacher.vocab.InStudentVocab``); None: one vocabulary
    vocab_map: VocabMap | None = None

    @property
    def trainable(self) -> nn.ModuleDict:
        """One module holding every parameter that may train (checkpoint and optimiser see this)."""
        return nn.ModuleDict({"student": self.model, "projectors": self.projectors})

    @property
    def device(self) -> torch.device:
        return next(self.whisper.parameters()).device

    @property
    def decoding_model(self) -> WhisperForConditionalGeneration:
        """What validation decodes with (adapters inside, not merged)."""
        return self.whisper

    def loss(
        self, loss_fn: Objective, batch: Batch, teacher: TeacherOutputs, step: int, total_steps: int
    ) -> tuple[Tensor, dict]:
        """``loss_fn`` (a ``DistillationLoss``) on the label positions only (labels != -100): no LM head
        over prompt and padding."""
        labels = batch["labels"].to(self.device)
        keep = valid_mask(labels)
        states = self(batch, teacher, keep)
        return loss_fn(states, teacher.at(keep), labels[keep][None], step=step, total_steps=total_steps)

    def __call__(self, batch: Batch, teacher: TeacherOutputs, positions: Tensor) -> ModelStates:
        """Teacher-forced forward; logits and decoder states only at ``positions`` ((B, L) bool), packed
        into (1, N, ...). Takes the teacher's encoder states / cross-attention K/V where it shares them."""
        dev = self.device
        enc = feats = None
        if self.shares_encoder and teacher.encoder_hidden is not None:  # frozen shared encoder: no forward
            enc = teacher.encoder_hidden.to(dev, torch.float32)
        elif self.context.dynamic:  # the clip + margin only; the teacher saw all 30 s
            feats = batch["input_features"][..., : self.context_frames(batch)].to(dev)
            enc = encode(self.whisper.model.encoder, feats).last_hidden_state
        else:
            feats = batch["input_features"].to(dev)
        given = teacher.cross_kv or {}
        kv = cast(
            CrossKV,
            {
                i: tuple(t.to(dev, torch.float32) for t in given[j])
                for i, j in self.cross_kv.items()
                if j in given
            },
        )
        s = forward_states(
            self.whisper,
            batch["decoder_input_ids"].to(dev),
            input_features=feats,
            encoder_hidden=enc,
            cross_kv=kv,
            positions=positions.to(dev),
            every_layer=bool(self.layer_map),
        )
        proj = self.projectors
        layers = None
        if self.layer_map:
            assert s.decoder_layers is not None  # asked for with every_layer
            layers = {j: proj[f"decoder_{i}"](s.decoder_layers[i]) for i, j in self.layer_map.items()}
        return ModelStates(
            logits=s.logits,
            decoder_hidden=proj["decoder"](s.decoder_hidden) if "decoder" in proj else None,
            encoder_hidden=proj["encoder"](s.encoder_hidden) if "encoder" in proj else None,
            decoder_layers=layers,
        )

    def context_frames(self, batch: Batch) -> int:
        """Mel frames the dynamic-context encoder sees for ``batch``: its longest clip + the margin, the
        margin jittered in training (drawn from the batch's ids and the seed: the same on resume)."""
        longest = max(clip_frames(round(float(s) * SAMPLE_RATE)) for s in batch["audio_seconds"])
        jitter = self.context_jitter if self.whisper.training else 0
        draw = torch.Generator().manual_seed(zlib.crc32("|".join(batch["ids"]).encode()) ^ self.seed)
        return jittered_frames(longest, self.context.margin, jitter, draw)

    def save(self, out: Path, extra: dict | None = None) -> None:
        """Save as a plain HF Whisper (adapters merged) + processor + projector + peft adapter.

        Written into a temp folder and swapped in, so a crash never leaves a half-written student; a failed
        write (disk full) removes the temp folder and is a one-line error that leaves ``out`` as it was.
        """
        replace_folder(out, lambda tmp: self._write(tmp, extra), "the student")

    def _write(self, tmp: Path, extra: dict | None) -> None:
        """Every file of ``save`` into the new folder ``tmp``."""
        model = self.model
        if hasattr(model, "merge_and_unload"):  # peft: keep the adapter alone too, then merge a copy
            peft = cast("PeftModel", model)
            peft.save_pretrained(str(tmp / "adapter"))
            model = copy.deepcopy(peft).merge_and_unload()
        model.save_pretrained(str(tmp))
        kept = trimmed_kept(self.whisper)
        if kept is not None:  # student.vocab: trimmed
            save_kept(tmp, kept, int(self.whisper.config.vocab_size))
        self.processor.save_pretrained(str(tmp))
        if len(self.projectors):
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in self.projectors.state_dict().items()},
                str(tmp / "projector.safetensors"),
            )
        record = {"teacher": self.teacher_name, **(extra or {})}
        (tmp / "geodistill.json").write_text(json.dumps(record, indent=2))


def base_student(
    cfg: Config,
    teacher: WhisperForConditionalGeneration | None,
    teacher_processor,
    device: torch.device,
    teacher_size: int | None = None,
) -> tuple[WhisperForConditionalGeneration, Any, VocabMap | None]:
    """(student Whisper before LoRA, its processor, the token map to the teacher's vocabulary or None): a
    layer copy of ``teacher`` or ``student.from``. ``teacher_size``: the teacher's vocabulary size when
    ``teacher`` is not loaded (a cache stands in)."""
    s = cfg.student
    if s.init == "copy":
        assert teacher is not None  # a copy needs the teacher's weights
        copied = copy_layers(teacher, s.encoder_layers, s.decoder_layers)
        # PreTrainedModel.to is @functools.wraps(nn.Module.to): typeshed's _Wrapped does not bind self
        student = copied.to(device, torch.float32)  # type: ignore[arg-type]
        return student, teacher_processor, None
    assert s.from_ is not None  # validate_config: init "pretrained" needs student.from
    student, processor = load_whisper(s.from_, device=str(device), dtype=torch.float32)
    untrim(student)  # a trimmed student.from starts over with the whole vocabulary (set-up trims anew)
    size = teacher_size if teacher is None else teacher.config.vocab_size
    assert size is not None  # given when the teacher is not loaded
    vocab_map = token_map(
        teacher_processor.tokenizer,
        int(size),
        processor.tokenizer,
        student.config.vocab_size,
        cfg.teacher,
        s.from_,
    )
    if s.encoder_layers is not None or s.decoder_layers is not None:
        student = copy_layers(student, s.encoder_layers, s.decoder_layers)
    return student, processor, vocab_map


def attach_training_parts(
    cfg: Config, student: WhisperForConditionalGeneration
) -> PeftModel | WhisperForConditionalGeneration:
    """Freeze what the config freezes and add LoRA; returns the module to train and save."""
    s = cfg.student
    model: PeftModel | WhisperForConditionalGeneration
    if s.lora.r > 0:
        model = add_lora(student, s.lora.r, s.lora.alpha, s.lora.dropout, s.lora.targets)
    else:
        model = student
    if s.freeze_encoder:
        freeze(student.model.encoder)
    elif s.lora.r > 0:  # peft froze the whole base model; an unfrozen encoder trains in full
        student.model.encoder.requires_grad_(True)
    if cfg.train.grad_checkpointing:
        student.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def build_projectors(
    cfg: Config, student_width: int, teacher_width: int, decoder_layers: int = 0
) -> nn.ModuleDict:
    """One RiemannianProjector (student width -> teacher width) per side the hidden loss compares; with
    ``loss.hidden_layers: all`` one per student decoder layer ("decoder_0", ...) for the decoder side."""
    projectors = nn.ModuleDict()
    if cfg.loss.hidden_active:
        sides = ["decoder", "encoder"] if cfg.loss.hidden_on == "both" else [cfg.loss.hidden_on]
        if "decoder" in sides and cfg.loss.hidden_layers == "all":
            sides = [f"decoder_{i}" for i in range(decoder_layers)] + [s for s in sides if s != "decoder"]
        for side in sides:
            projectors[side] = RiemannianProjector(student_width, teacher_width)
    return projectors


def layer_map(cfg: Config, teacher_layers: int, student_layers: int) -> dict[int, int]:
    """Student decoder layer -> the teacher layer its states are compared with (``hidden_layers: all``):
    a copy's kept layers map to the layers they came from, another Whisper's evenly spaced (last to last).
    Empty when only the last layer is compared."""
    lo = cfg.loss
    if lo.hidden_layers != "all" or not lo.hidden_active or lo.hidden_on == "encoder":
        return {}
    s = cfg.student
    if s.init != "copy" and student_layers > teacher_layers:
        raise GeodistillError(
            f"loss.hidden_layers: all needs a student with at most the teacher's {teacher_layers} decoder "
            f"layers, got {student_layers}"
        )
    kept = s.decoder_layers if s.init == "copy" else student_layers
    return dict(enumerate(spaced_layers(teacher_layers, kept)))


def _warn_inert_hidden_loss(cfg: Config, student: WhisperForConditionalGeneration) -> None:
    lo = cfg.loss
    if not lo.hidden_active or lo.hidden_on == "decoder":
        return
    if not any(p.requires_grad for p in student.model.encoder.parameters()):
        log.warning(
            "loss.hidden_on=%s with a frozen student encoder: the encoder hidden loss can only train the "
            "projector, not the student (the seed diagram's flaw). Use hidden_on=decoder or unfreeze the "
            "encoder.",
            lo.hidden_on,
        )


def build_whisper_student(
    cfg: Config, teacher, teacher_processor, teacher_config: dict, device: torch.device
) -> WhisperStudent:
    """The configured student on ``device`` (sharing with the teacher is decided later, by set-up)."""
    s = cfg.student
    teacher_width, teacher_layers = teacher_config["d_model"], teacher_config["decoder_layers"]
    whisper, processor, vocab_map = base_student(
        cfg, teacher, teacher_processor, device, teacher_size=teacher_config["vocab_size"]
    )
    if vocab_map is not None:
        log.info(
            "student vocabulary (%d ids) mapped onto the teacher's (%d): %d teacher id(s) without a "
            "counterpart left out of the KL (%s)",
            vocab_map.student_size,
            vocab_map.teacher_size,
            len(vocab_map.dropped),
            ", ".join(teacher_processor.tokenizer.convert_ids_to_tokens(list(vocab_map.dropped))),
        )
    model = attach_training_parts(cfg, whisper)
    _warn_inert_hidden_loss(cfg, whisper)
    n_layers = whisper.config.decoder_layers
    projectors = build_projectors(cfg, whisper.config.d_model, teacher_width, n_layers).to(device)
    trainable, total = parameter_counts(model, projectors)
    log.info(
        "student: %s trainable of %s parameters (%.2f%%)",
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / max(total, 1),
    )
    context = AudioContext(s.audio_context, s.context_margin)
    set_audio_context(whisper, context)  # saved in config.json: evaluate / transcribe use it with no flag
    return WhisperStudent(
        model,
        whisper,
        processor,
        projectors,
        cfg.teacher,
        layer_map=layer_map(cfg, teacher_layers, n_layers),
        context=context,
        context_jitter=s.context_jitter,
        seed=cfg.train.seed,
        vocab_map=vocab_map,
    )
