"""The run's teacher from its config: the frozen model, and the provider of its outputs (online or cached).

``make_teacher`` is the one place that chooses the provider; training set-up and tuning both use it.
``cached_teacher_for`` finds (or first builds) the cache a config names; the ``teacher`` package itself
knows nothing of the config.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch
from transformers import WhisperForConditionalGeneration

from geodistill.config import Config
from geodistill.contracts import TeacherProvider
from geodistill.data.tokens import Prompts
from geodistill.errors import DataError, GeodistillError
from geodistill.models import load_whisper, resolve_device
from geodistill.models.student import spaced_layers
from geodistill.teacher import OnlineTeacher
from geodistill.teacher.cache import (
    BuildOptions,
    CachedTeacher,
    CacheOptions,
    build_cache,
    is_complete,
    teacher_fingerprint,
)

log = logging.getLogger("geodistill")

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
    every_layer = cfg.loss.hidden_layers == "all" and cfg.loss.hidden_loss != "none"
    if cfg.teacher_cache:
        if every_layer:
            raise GeodistillError(
                "loss.hidden_layers: all needs the online teacher (a teacher cache stores the last decoder "
                "layer's states only); use hidden_layers: last or drop teacher_cache"
            )
        stored = layers if cfg.teacher_cache_cross_kv else ()
        if shared is None and not cache_stands_in(cfg):
            shared = load_teacher(cfg)
        return cached_teacher_for(cfg, teacher_model=shared, cross_kv_layers=stored)
    model, _ = shared or load_teacher(cfg)
    return OnlineTeacher(model, cross_kv_layers=layers, every_decoder_layer=every_layer)


@contextlib.contextmanager
def _on_device(teacher_model, device: str):
    """A loaded teacher moved to ``device`` for the build (a run keeps its teacher on the CPU, where only
    its weights are needed) and moved back afterwards."""
    if teacher_model is None:
        yield None
        return
    model, processor = teacher_model
    home = next(model.parameters()).device
    model.to(resolve_device(device))
    try:
        yield model, processor
    finally:
        model.to(home)


def encoder_states_read(cfg: Config, teacher_encoder_layers: int | None) -> bool:
    """Whether the run ``cfg`` reads the teacher's last encoder states, so a cache should store them: a
    hidden loss on the encoder side, or a copy student whose encoder is the teacher's own, frozen and whole
    (it takes the states instead of running its encoder: ``students.seq2seq.sharing.encoder_shared``).
    ``teacher_encoder_layers`` None (not known): a student keeping a count or list of layers may be whole.
    """
    lo, s = cfg.loss, cfg.student
    if lo.hidden_active and lo.hidden_on in ("encoder", "both"):
        return True
    if s.init != "copy" or s.audio_context == "dynamic" or not s.freeze_encoder:
        return False
    if s.encoder_layers is None or teacher_encoder_layers is None:
        return True
    return len(spaced_layers(teacher_encoder_layers, s.encoder_layers)) == teacher_encoder_layers


def cached_teacher_for(
    cfg: Config, teacher_model=None, cross_kv_layers: tuple[int, ...] = ()
) -> CachedTeacher:
    """The run's teacher read from ``cfg.teacher_cache``, built first over ``cfg.data.train`` if absent or
    partial (top_k 64, fp16, the encoder states when the run reads them (``encoder_states_read``), and the
    cross-attention K/V of ``cross_kv_layers``; use ``geodistill cache`` for other choices). A complete
    cache is used as it is, whichever cross-attention layers it holds.

    teacher_model: the run's loaded (model, processor), when it has one: the cache must then hold this
    teacher's weights (fingerprint) and decoder prompt. Without it the cache must name ``cfg.teacher``.
    A cache for another teacher, data or label settings is refused naming the field.
    """
    d, out = cfg.data, Path(cfg.teacher_cache)
    if d.train is None:
        raise DataError("data.train: no training data spec given (the teacher cache is built over it)")
    label = {
        "language": d.language,
        "task": d.task,
        "timestamp_probability": d.timestamp_probability,
        "normalise_text": d.normalise_text,
        "min_duration": d.min_duration,
        "max_duration": d.max_duration,
    }
    if not is_complete(out):
        log.info("teacher cache %s: building it over %s (once; later runs and trials reuse it)", out, d.train)
        with _on_device(teacher_model, cfg.train.teacher_device) as teacher:
            layers = None if teacher_model is None else teacher_model[0].config.encoder_layers
            options = CacheOptions(
                store_encoder=encoder_states_read(cfg, layers),
                temperatures=(cfg.loss.temperature,),
                cross_kv_layers=cross_kv_layers,
            )
            build = BuildOptions(
                batch_size=cfg.train.batch_size, device=cfg.train.teacher_device, seed=cfg.train.seed, **label
            )
            build_cache(teacher or cfg.teacher, d.train, out, options, build)
    expect = {"data": d.train, **label}
    expect["timestamp_seed"] = cfg.train.seed if d.timestamp_probability > 0 else None
    if teacher_model is None:
        expect["teacher"] = cfg.teacher
    else:
        model, processor = teacher_model
        expect["teacher_fingerprint"] = teacher_fingerprint(model)
        prompts = Prompts(processor, model, language=d.language, task=d.task)
        expect["prompt"] = prompts.ids() if prompts.problem(None, None) is None else []
    return CachedTeacher(out, expect, temperature=cfg.loss.temperature)
