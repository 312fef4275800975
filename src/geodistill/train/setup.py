"""Everything a run needs, built from its config: teacher, student (+ LoRA, projectors), data, prompt.

``build_run(cfg)`` is deterministic given ``cfg.train.seed``: a resumed run rebuilds the same frozen
weights and only loads the trainable ones from the checkpoint.
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from geodistill.config import Config
from geodistill.data import (
    BadSamples,
    SpeechDataset,
    WhisperCollator,
    load_spec,
    prompt_ids,
    split_by_speaker,
)
from geodistill.errors import DataError, GeodistillError
from geodistill.models import load_whisper, resolve_device
from geodistill.models.lora import add_lora, lora_patterns, parameter_counts
from geodistill.models.projector import RiemannianProjector
from geodistill.models.student import check_same_tokenizer, copy_layers, freeze, spaced_layers
from geodistill.teacher import OnlineTeacher
from geodistill.train.distributed import World

log = logging.getLogger("geodistill")


@dataclass
class Run:
    cfg: Config
    run_dir: Path
    device: torch.device
    teacher: object  # callable batch -> TeacherOutputs (OnlineTeacher or a cache reader)
    processor: object  # the student's WhisperProcessor (same tokenizer as the teacher's)
    student: nn.Module  # PeftModel or WhisperForConditionalGeneration: what gets saved
    whisper: WhisperForConditionalGeneration  # the student's Whisper (adapters inside when LoRA is on)
    projectors: nn.ModuleDict  # "decoder"/"encoder" -> RiemannianProjector (student width -> teacher width)
    shares_encoder: bool  # student encoder == frozen teacher encoder: reuse the teacher's encoder states
    cross_kv: dict[int, int]  # student decoder layer -> teacher layer whose cross-attention K/V it reuses
    train_set: SpeechDataset
    val_utts: list
    collate: WhisperCollator
    prompt: list[int]
    bad: BadSamples
    world: World  # data-parallel position (rank 0 of 1 without a launcher)

    @property
    def trainable(self) -> nn.ModuleDict:
        """One module holding every parameter that may train (checkpoint and optimiser see this)."""
        return nn.ModuleDict({"student": self.student, "projectors": self.projectors})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _teacher_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32


def build_student(
    cfg: Config, teacher: WhisperForConditionalGeneration, teacher_processor, device: torch.device
):
    """(student Whisper before LoRA, its processor, True if it is a layer copy)."""
    s = cfg.student
    if s.init == "copy":
        student = copy_layers(teacher, s.encoder_layers, s.decoder_layers).to(device, torch.float32)
        return student, teacher_processor
    student, processor = load_whisper(s.from_, device=str(device), dtype=torch.float32)
    check_same_tokenizer(teacher_processor.tokenizer, processor.tokenizer, cfg.teacher, s.from_)
    if s.encoder_layers is not None or s.decoder_layers is not None:
        student = copy_layers(student, s.encoder_layers, s.decoder_layers)
    return student, processor


def attach_training_parts(cfg: Config, student: WhisperForConditionalGeneration) -> nn.Module:
    """Freeze what the config freezes and add LoRA; returns the module to train and save."""
    s = cfg.student
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


def cross_kv_plan(cfg: Config, teacher_config) -> dict[int, int]:
    """Student decoder layer -> teacher layer whose cross-attention keys/values the config leaves shared.

    Cross-attention keys and values are ``encoder_attn.k_proj`` / ``v_proj`` of the encoder states. For a
    copy student whose encoder is the teacher's, frozen, and whose LoRA targets leave a kept layer's
    k_proj and v_proj alone (e.g. preset ``decoder-text-side``), that layer's keys/values equal the
    teacher layer's: constants per utterance for the whole run, which the teacher hands over (online:
    computed in its own forward anyway; cached: stored once, ``teacher_cache_cross_kv``) instead of the
    student recomputing 2 x 1500 x D x D multiply-adds per layer and utterance each step. Not with
    LoRA r = 0 (the decoder trains in full) or gradient checkpointing (transformers drops the cache).
    """
    s = cfg.student
    every_encoder_layer = spaced_layers(teacher_config.encoder_layers, s.encoder_layers)
    if (
        s.init != "copy"
        or not s.freeze_encoder
        or len(every_encoder_layer) != teacher_config.encoder_layers
        or s.lora.r == 0
        or cfg.train.grad_checkpointing
    ):
        return {}
    adapted = re.compile("|".join(f"(?:{p})" for p in lora_patterns(s.lora.targets)))
    kept = spaced_layers(teacher_config.decoder_layers, s.decoder_layers)

    def frozen(i: int) -> bool:
        return not any(
            adapted.fullmatch(f"model.decoder.layers.{i}.encoder_attn.{n}") for n in ("k_proj", "v_proj")
        )

    return {i: j for i, j in enumerate(kept) if frozen(i)}


def shared_cross_kv(cfg: Config, teacher, student, shares_encoder: bool) -> dict[int, int]:
    """``cross_kv_plan`` checked against the built models: the student's projections must be frozen plain
    linears holding the teacher layer's exact weights, and its encoder output the teacher's."""
    if not shares_encoder:
        return {}
    shared = {}
    for i, j in cross_kv_plan(cfg, teacher.config).items():
        mine = student.model.decoder.layers[i].encoder_attn
        theirs = teacher.model.decoder.layers[j].encoder_attn
        same = all(
            type(getattr(mine, name)) is nn.Linear
            and not any(p.requires_grad for p in getattr(mine, name).parameters())
            and all(
                torch.equal(a.detach().cpu(), b.detach().to("cpu", a.dtype))
                for a, b in zip(
                    getattr(mine, name).parameters(), getattr(theirs, name).parameters(), strict=True
                )
            )
            for name in ("k_proj", "v_proj")
        )
        if same:
            shared[i] = j
        else:
            log.warning("student decoder layer %d: cross-attention k/v differ from teacher layer %d", i, j)
    return shared


def _encoder_shared(cfg: Config, teacher, student) -> bool:
    """True when the student's encoder is an untouched, frozen, full copy of the teacher's."""
    s = cfg.student
    if (
        s.init != "copy"
        or not s.freeze_encoder
        or student.config.encoder_layers != teacher.config.encoder_layers
    ):
        return False
    return not any(p.requires_grad for p in student.model.encoder.parameters())


def _provided_cross_kv(cfg: Config, shared: dict[int, int], provider, width: int) -> dict[int, int]:
    """The part of ``shared`` the teacher provider hands over, logged (with what a cache would cost)."""
    if not shared:
        return {}
    available = getattr(provider, "cross_kv_layers", ())
    used = {i: j for i, j in shared.items() if j in available}
    if used:
        log.info(
            "cross-attention keys/values of student decoder layers %s reused from teacher layers %s "
            "(frozen, identical projections of the same encoder states): not recomputed per step",
            sorted(used),
            [used[i] for i in sorted(used)],
        )
    missing = sorted(set(shared.values()) - set(available))
    if missing and cfg.teacher_cache:
        mb = 2 * 2 * 1500 * width * len(missing) / 1e6  # fp16 keys + values per utterance
        log.info(
            "teacher cache: the frozen cross-attention keys/values of teacher layers %s are not stored, so "
            "the student recomputes them each step; teacher_cache_cross_kv: true (in a new cache folder) "
            "stores them, %.1f MB per utterance",
            missing,
            mb,
        )
    return used


def _warn_inert_hidden_loss(cfg: Config, student) -> None:
    lo = cfg.loss
    if lo.hidden_loss == "none" or lo.geo_weight == 0 or lo.hidden_on == "decoder":
        return
    if not any(p.requires_grad for p in student.model.encoder.parameters()):
        log.warning(
            "loss.hidden_on=%s with a frozen student encoder: the encoder hidden loss can only train the "
            "projector, not the student (the seed diagram's flaw). Use hidden_on=decoder or unfreeze the "
            "encoder.",
            lo.hidden_on,
        )


def build_data(cfg: Config, processor, model, bad: BadSamples, with_features: bool = True):
    d = cfg.data
    if not d.train:
        raise DataError("data.train: no training data spec given")
    utts = load_spec(d.train, bad=bad, min_duration=d.min_duration, max_duration=d.max_duration)
    if d.val:
        val = load_spec(d.val, bad=bad, min_duration=d.min_duration, max_duration=d.max_duration)
    else:
        utts, val = split_by_speaker(utts, d.val_fraction, cfg.train.seed)
    if not utts:
        raise DataError(
            f"data.train: {d.train} has no usable utterances ({bad.count} skipped, see bad_samples.jsonl)"
        )
    if d.val_limit is not None:
        val = val[: d.val_limit]
    prompt = prompt_ids(processor, model, language=d.language)
    train_set = SpeechDataset(
        utts, processor, bad=bad, normalise_text=d.normalise_text, with_features=with_features
    )
    return train_set, val, prompt


def build_projectors(cfg: Config, student_width: int, teacher_width: int) -> nn.ModuleDict:
    """One RiemannianProjector (student width -> teacher width) per side the hidden loss compares."""
    projectors = nn.ModuleDict()
    if cfg.loss.hidden_loss != "none" and cfg.loss.geo_weight > 0:
        sides = ["decoder", "encoder"] if cfg.loss.hidden_on == "both" else [cfg.loss.hidden_on]
        for side in sides:
            projectors[side] = RiemannianProjector(student_width, teacher_width)
    return projectors


def _cache_stands_in(cfg: Config) -> bool:
    """True when a complete teacher cache gives the run all it needs from the teacher: a pretrained
    student takes nothing from the teacher's weights (a layer copy does), so they are not even loaded."""
    from geodistill.teacher.cache import is_complete

    return bool(cfg.teacher_cache) and cfg.student.init == "pretrained" and is_complete(cfg.teacher_cache)


def load_teacher(cfg: Config):
    """(model, processor) of ``cfg.teacher``, frozen, on ``train.teacher_device`` (fp16 on CUDA).

    With a teacher cache only its weights are needed (layer copy, cache fingerprint): it stays on the CPU.
    """
    t = cfg.train
    if cfg.teacher_cache:
        device = torch.device("cpu")
    else:
        device = resolve_device(t.device if t.teacher_device == "auto" else t.teacher_device)
    model, processor = load_whisper(cfg.teacher, device=str(device), dtype=_teacher_dtype(device))
    return model.eval().requires_grad_(False), processor


def build_run(cfg: Config, teacher_provider=None, teacher_model=None, world: World | None = None) -> Run:
    """Build a run. ``teacher_provider`` (e.g. a cache reader) replaces the online teacher;
    ``teacher_model`` = a preloaded (model, processor) pair shared across runs (tuning trials)."""
    run_dir, world = Path(cfg.run_dir), world or World()
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    if teacher_model is None and teacher_provider is None and _cache_stands_in(cfg):
        from geodistill.teacher.cache import cached_teacher_for

        teacher_provider, teacher = cached_teacher_for(cfg), None
        t_proc = WhisperProcessor.from_pretrained(str(teacher_provider.processor_dir))
        teacher_width = teacher_provider.teacher_config["d_model"]
        log.info(
            "teacher cache %s is complete and the student is not a copy: teacher not loaded",
            cfg.teacher_cache,
        )
    else:
        teacher, t_proc = teacher_model or load_teacher(cfg)
        teacher.requires_grad_(False).eval()
        teacher_width = teacher.config.d_model
    student, processor = build_student(cfg, teacher, t_proc, device)
    model = attach_training_parts(cfg, student)
    _warn_inert_hidden_loss(cfg, student)
    projectors = build_projectors(cfg, student.config.d_model, teacher_width).to(device)
    trainable, total = parameter_counts(model, projectors)
    log.info(
        "student: %s trainable of %s parameters (%.2f%%)",
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / max(total, 1),
    )
    shares = _encoder_shared(cfg, teacher, student)
    cross_kv = shared_cross_kv(cfg, teacher, student, shares)
    if teacher_provider is None and cfg.teacher_cache:  # stored teacher outputs: no teacher forward per step
        from geodistill.teacher.cache import cached_teacher_for

        layers = tuple(sorted(cross_kv.values())) if cfg.teacher_cache_cross_kv else ()
        teacher_provider = cached_teacher_for(cfg, teacher_model=(teacher, t_proc), cross_kv_layers=layers)
    if teacher_provider is None:
        teacher_provider = OnlineTeacher(teacher, cross_kv_layers=tuple(sorted(cross_kv.values())))
    cross_kv = _provided_cross_kv(cfg, cross_kv, teacher_provider, teacher_width)
    if shares and getattr(teacher_provider, "encoder_pool", None):
        raise GeodistillError(
            f"teacher_cache: encoder states pooled by {teacher_provider.encoder_pool} cannot "
            "stand in for the shared frozen encoder's output; rebuild without encoder_pool"
        )
    # Cached encoder states replace the student's encoder input: no log-Mel features to compute per step.
    cached_encoder = shares and bool(getattr(teacher_provider, "index", {}).get("store_encoder"))
    bad = BadSamples(run_dir / "bad_samples.jsonl" if world.is_main else None, strict=cfg.data.strict)
    if world.is_main:
        (run_dir / "bad_samples.jsonl").touch()  # present (possibly empty) in every run folder
    train_set, val, prompt = build_data(cfg, processor, student, bad, with_features=not cached_encoder)
    return Run(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        teacher=teacher_provider,
        processor=processor,
        student=model,
        whisper=student,
        projectors=projectors,
        shares_encoder=shares,
        cross_kv=cross_kv,
        train_set=train_set,
        val_utts=val,
        collate=WhisperCollator(prompt, processor.tokenizer.pad_token_id),
        prompt=prompt,
        bad=bad,
        world=world,
    )
