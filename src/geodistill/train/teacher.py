"""The run's teacher from its config: the frozen model, and the provider of its outputs (online or cached).

``make_teacher`` is the one place that chooses the provider; training set-up and tuning both use it.
"""

from __future__ import annotations

import torch
from transformers import WhisperForConditionalGeneration

from geodistill.config import Config
from geodistill.contracts import TeacherProvider
from geodistill.models import load_whisper, resolve_device
from geodistill.teacher import OnlineTeacher

TeacherModel = tuple[WhisperForConditionalGeneration, object]  # (frozen model, its WhisperProcessor)


def load_teacher(cfg: Config) -> TeacherModel:
    """(model, processor) of ``cfg.teacher``, frozen, on ``train.teacher_device`` (fp16 on CUDA).

    With a teacher cache only its weights are needed (layer copy, cache fingerprint): it stays on the CPU.
    """
    t = cfg.train
    if cfg.teacher_cache:
        device = torch.device("cpu")
    else:
        device = resolve_device(t.device if t.teacher_device == "auto" else t.teacher_device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    model, processor = load_whisper(cfg.teacher, device=str(device), dtype=dtype)
    return model.eval().requires_grad_(False), processor


def cache_stands_in(cfg: Config) -> bool:
    """True when a complete teacher cache gives the run all it needs from the teacher: a pretrained
    student takes nothing from the teacher's weights (a layer copy does), so they are not even loaded."""
    from geodistill.teacher.cache import is_complete

    return bool(cfg.teacher_cache) and cfg.student.init == "pretrained" and is_complete(cfg.teacher_cache)


def make_teacher(
    cfg: Config, shared: TeacherModel | None = None, cross_kv_layers: tuple[int, ...] = ()
) -> TeacherProvider:
    """The provider of the teacher's outputs for ``cfg``.

    shared: the loaded (model, processor) to use (a run's, or one that tuning trials share); loaded here
    when needed and not given. cross_kv_layers: teacher decoder layers whose cross-attention keys/values
    a student can take; the online teacher hands them over, a cache stores them only with
    ``teacher_cache_cross_kv``. With ``teacher_cache`` the cache is built first when absent or partial.
    """
    layers = tuple(sorted(set(cross_kv_layers)))
    if cfg.teacher_cache:
        from geodistill.teacher.cache import cached_teacher_for

        stored = layers if cfg.teacher_cache_cross_kv else ()
        if shared is None and not cache_stands_in(cfg):
            shared = load_teacher(cfg)
        return cached_teacher_for(cfg, teacher_model=shared, cross_kv_layers=stored)
    model, _ = shared or load_teacher(cfg)
    return OnlineTeacher(model, cross_kv_layers=layers)
