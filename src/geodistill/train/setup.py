"""Everything a run needs, built from its config: teacher, student (+ LoRA, projectors), data, prompt.

``build_run(cfg)`` is deterministic given ``cfg.train.seed``: a resumed run rebuilds the same frozen
weights and only loads the trainable ones from the checkpoint.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperProcessor

from geodistill.config import Config
from geodistill.contracts import TeacherProvider
from geodistill.data import (
    BadSamples,
    SpeechDataset,
    WhisperCollator,
    load_spec,
    prompt_ids,
    split_by_speaker,
)
from geodistill.data.hub import is_hub_spec
from geodistill.errors import DataError, GeodistillError
from geodistill.models import resolve_device
from geodistill.students import WhisperStudent, build_whisper_student
from geodistill.students.ctc import CTCCollator, CTCStudent, build_ctc_student
from geodistill.students.sharing import encoder_shared, provided_cross_kv, shared_cross_kv
from geodistill.teacher.outputs import NoTeacherSignal, OnlineTeacherEncoder
from geodistill.train.distributed import World
from geodistill.train.teacher import TeacherModel, cache_stands_in, load_teacher, make_teacher

log = logging.getLogger("geodistill")


@dataclass
class Run:
    cfg: Config
    run_dir: Path
    device: torch.device
    teacher: TeacherProvider  # batch -> TeacherOutputs (online model or a cache reader)
    student: WhisperStudent | CTCStudent  # the model that trains, its processor, projectors, what it shares
    train_set: SpeechDataset
    val_utts: list
    collate: WhisperCollator | CTCCollator
    prompt: list[int]
    bad: BadSamples
    world: World  # data-parallel position (rank 0 of 1 without a launcher)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_data(cfg: Config, processor, model, bad: BadSamples, with_features: bool = True):
    d = cfg.data
    if not d.train:
        raise DataError("data.train: no training data spec given")
    streamed = is_hub_spec(d.train)  # read as it trains (geodistill.data.hub): nothing to list up front
    if streamed and not d.val:
        raise DataError(f"data.val: a streamed data.train ({d.train}) needs its own validation spec")
    if streamed and cfg.teacher_cache:
        raise DataError(f"teacher_cache: a cache is built over a listed data.train, not the stream {d.train}")
    utts = (
        []
        if streamed
        else load_spec(d.train, bad=bad, min_duration=d.min_duration, max_duration=d.max_duration)
    )
    if d.val:
        val = load_spec(d.val, bad=bad, min_duration=d.min_duration, max_duration=d.max_duration)
    else:
        utts, val = split_by_speaker(utts, d.val_fraction, cfg.train.seed)
    if not utts and not streamed:
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


def _teacher_side(cfg: Config, teacher_model: TeacherModel | None, teacher_provider):
    """(teacher model or None, its processor, its config dict, provider or None) before the student exists.

    With a complete cache and a pretrained student the teacher's weights are not loaded at all."""
    if teacher_model is None and teacher_provider is None and cache_stands_in(cfg):
        provider = make_teacher(cfg)
        log.info(
            "teacher cache %s is complete and the student is not a copy: teacher not loaded",
            cfg.teacher_cache,
        )
        processor = WhisperProcessor.from_pretrained(str(provider.processor_dir))
        return None, processor, provider.teacher_config, provider
    model, processor = teacher_model or load_teacher(cfg)
    model.requires_grad_(False).eval()
    return model, processor, model.config.to_dict(), teacher_provider


def build_run(
    cfg: Config,
    teacher_provider: TeacherProvider | None = None,
    teacher_model: TeacherModel | None = None,
    world: World | None = None,
) -> Run:
    """Build a run. ``teacher_provider`` (e.g. a cache reader) replaces the configured one;
    ``teacher_model`` = a preloaded (model, processor) pair shared across runs (tuning trials)."""
    run_dir, world = Path(cfg.run_dir), world or World()
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    teacher, t_proc, t_config, provider = _teacher_side(cfg, teacher_model, teacher_provider)
    if cfg.student.init == "ctc":
        return _ctc_run(cfg, run_dir, device, world, (teacher, t_proc, t_config, provider))
    student = build_whisper_student(cfg, teacher, t_proc, t_config, device)
    shares = encoder_shared(cfg, teacher, student.whisper)
    cross_kv = shared_cross_kv(cfg, teacher, student.whisper, shares)
    if provider is None:
        provider = make_teacher(cfg, (teacher, t_proc), cross_kv_layers=tuple(cross_kv.values()))
    offer = provider.offer
    student.shares_encoder = shares
    student.cross_kv = provided_cross_kv(cfg, cross_kv, offer, t_config["d_model"])
    if student.layer_map and not offer.every_decoder_layer:
        raise GeodistillError(
            "loss.hidden_layers: all needs a teacher that hands over every decoder layer's states "
            "(the online teacher; a cache stores the last layer only)"
        )
    if shares and offer.encoder_pool:
        raise GeodistillError(
            f"teacher_cache: encoder states pooled by {offer.encoder_pool} cannot "
            "stand in for the shared frozen encoder's output; rebuild without encoder_pool"
        )
    # Cached encoder states replace the student's encoder input: no log-Mel features to compute per step.
    cached_encoder = shares and offer.encoder_states and not offer.reads_features
    bad = _bad_samples(cfg, run_dir, world)
    processor = student.processor
    train_set, val, prompt = build_data(
        cfg, processor, student.whisper, bad, with_features=not cached_encoder
    )
    return Run(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        teacher=provider,
        student=student,
        train_set=train_set,
        val_utts=val,
        collate=WhisperCollator(prompt, processor.tokenizer.pad_token_id),
        prompt=prompt,
        bad=bad,
        world=world,
    )


def _bad_samples(cfg: Config, run_dir: Path, world: World) -> BadSamples:
    bad = BadSamples(run_dir / "bad_samples.jsonl" if world.is_main else None, strict=cfg.data.strict)
    if world.is_main:
        (run_dir / "bad_samples.jsonl").touch()  # present (possibly empty) in every run folder
    return bad


def _ctc_run(cfg: Config, run_dir: Path, device: torch.device, world: World, side: tuple) -> Run:
    """A run with a CTC student: the online (or cached) teacher gives encoder states only to compare."""
    teacher, t_proc, t_config, provider = side
    student = build_ctc_student(cfg, teacher, t_proc, t_config, device)
    if provider is None and not cfg.loss.hidden_active:
        provider = NoTeacherSignal()  # CTC on the transcripts only: nothing to take from the teacher per step
    elif provider is None and not cfg.teacher_cache:  # no token losses: the teacher's decoder is not run
        provider = OnlineTeacherEncoder(teacher)
    elif provider is None:
        provider = make_teacher(cfg, (teacher, t_proc))
    bad = _bad_samples(cfg, run_dir, world)
    train_set, val, prompt = build_data(cfg, t_proc, teacher, bad)
    base = WhisperCollator(prompt, t_proc.tokenizer.pad_token_id)
    collate = CTCCollator(base, t_proc.tokenizer, cfg.student.ctc.downsample, bad)
    return Run(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        teacher=provider,
        student=student,
        train_set=train_set,
        val_utts=val,
        collate=collate,
        prompt=prompt,
        bad=bad,
        world=world,
    )
