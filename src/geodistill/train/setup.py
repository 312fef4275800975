"""Everything a run needs, built from its config: teacher, student (+ LoRA, projectors), data, prompt.

``build_run(cfg)`` is deterministic given ``cfg.train.seed``: a resumed run rebuilds the same frozen
weights and only loads the trainable ones from the checkpoint.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from transformers import WhisperProcessor

from geodistill.config import Config
from geodistill.contracts import Batch, Student, TeacherProvider
from geodistill.data import BadSamples, SpeechDataset
from geodistill.distributed import World
from geodistill.models import resolve_device
from geodistill.runfolder import RunFolder
from geodistill.students import family_for_init
from geodistill.students.family import TeacherSide
from geodistill.teacher.cache import CachedTeacher
from geodistill.teacher.factory import TeacherModel, cache_stands_in, load_teacher, make_teacher

log = logging.getLogger("geodistill")


@dataclass
class Run:
    cfg: Config
    run_dir: Path
    device: torch.device
    teacher: TeacherProvider  # batch -> TeacherOutputs (online model or a cache reader)
    student: Student  # the model that trains, its processor, projectors (its family's; geodistill.students)
    train_set: SpeechDataset
    val_utts: list
    collate: Callable[[list], Batch]  # samples -> Batch (the family's collator)
    prompt: list[int]
    bad: BadSamples
    world: World  # data-parallel position (rank 0 of 1 without a launcher)

    @property
    def folder(self) -> RunFolder:
        """The run folder's layout (checkpoint, best/, adapter_final/, history, ...)."""
        return RunFolder(self.run_dir)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _teacher_side(cfg: Config, teacher_model: TeacherModel | None, teacher_provider) -> TeacherSide:
    """The teacher before the student exists: its model (or None), processor, config dict, provider or None.

    With a complete cache and a pretrained student the teacher's weights are not loaded at all."""
    if teacher_model is None and teacher_provider is None and cache_stands_in(cfg):
        provider = cast(CachedTeacher, make_teacher(cfg))  # with a teacher_cache: its reader
        log.info(
            "teacher cache %s is complete and the student is not a copy: teacher not loaded",
            cfg.teacher_cache,
        )
        cached_processor = WhisperProcessor.from_pretrained(str(provider.processor_dir))
        return TeacherSide(None, cached_processor, provider.teacher_config, provider)
    model, processor = teacher_model or load_teacher(cfg)
    model.requires_grad_(False).eval()
    return TeacherSide(model, processor, model.config.to_dict(), teacher_provider)


def build_run(
    cfg: Config,
    teacher_provider: TeacherProvider | None = None,
    teacher_model: TeacherModel | None = None,
    world: World | None = None,
) -> Run:
    """Build a run. ``teacher_provider`` (e.g. a cache reader) replaces the configured one;
    ``teacher_model`` = a preloaded (model, processor) pair shared across runs (tuning trials)."""
    family = family_for_init(cfg.student.init)  # an unknown init fails before the teacher loads
    run_dir, world = Path(cfg.run_dir), world or World()
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.train.seed)
    device = resolve_device(cfg.train.device)
    side = _teacher_side(cfg, teacher_model, teacher_provider)
    bad = _bad_samples(cfg, run_dir, world)
    parts = family.build(cfg, side, bad, device)
    return Run(
        cfg=cfg,
        run_dir=run_dir,
        device=device,
        teacher=parts.teacher,
        student=parts.student,
        train_set=parts.train_set,
        val_utts=parts.val_utts,
        collate=parts.collate,
        prompt=parts.prompt,
        bad=bad,
        world=world,
    )


def _bad_samples(cfg: Config, run_dir: Path, world: World) -> BadSamples:
    path = RunFolder(run_dir).bad_samples
    bad = BadSamples(path if world.is_main else None, strict=cfg.data.strict)
    if world.is_main:
        path.touch()  # present (possibly empty) in every run folder
    return bad
