"""What a copy student may take from its teacher instead of computing it, in one place.

Two speed-ups, both exact:

- **Encoder states.** A student whose encoder is an untouched, frozen, full copy of the teacher's has the
  teacher's encoder output: it takes the states the teacher (online or cached) hands over.
- **Cross-attention keys/values.** Those are ``encoder_attn.k_proj`` / ``v_proj`` of the encoder states.
  For a copy student that shares the encoder and whose LoRA leaves a kept layer's k_proj and v_proj alone
  (e.g. preset ``decoder-text-side``), that layer's keys/values equal the teacher layer's: constants per
  utterance for the whole run, which the teacher hands over (online: computed in its own forward anyway;
  cached: stored once, ``teacher_cache_cross_kv``) instead of the student recomputing
  2 x 1500 x D x D multiply-adds per layer and utterance each step. Not with LoRA r = 0 (the decoder
  trains in full) or gradient checkpointing (transformers drops the cache).

``cross_kv_plan`` decides from the config alone (the cache builder and tuning use it before any student
exists); ``shared_cross_kv`` checks the built models; ``provided_cross_kv`` keeps what the teacher
provider actually offers.
"""

from __future__ import annotations

import logging
import re

import torch
from torch import nn

from geodistill.config import Config, lora_patterns
from geodistill.contracts import TeacherOffer
from geodistill.models.student import spaced_layers

log = logging.getLogger("geodistill")


def cross_kv_plan(cfg: Config, teacher_config) -> dict[int, int]:
    """Student decoder layer -> teacher layer whose cross-attention keys/values the config leaves shared."""
    s = cfg.student
    every_encoder_layer = spaced_layers(teacher_config.encoder_layers, s.encoder_layers)
    if (
        s.init != "copy"
        or s.audio_context == "dynamic"
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


def encoder_shared(cfg: Config, teacher, student) -> bool:
    """True when the student's encoder is an untouched, frozen, full copy of the teacher's."""
    s = cfg.student
    if (
        s.init != "copy"
        or s.audio_context == "dynamic"  # its encoder runs over the clip, the teacher's over 30 s
        or not s.freeze_encoder
        or student.config.encoder_layers != teacher.config.encoder_layers
    ):
        return False
    return not any(p.requires_grad for p in student.model.encoder.parameters())


def _same_frozen_linear(mine: nn.Module, theirs: nn.Module) -> bool:
    return (
        type(mine) is nn.Linear
        and not any(p.requires_grad for p in mine.parameters())
        and all(
            torch.equal(a.detach().cpu(), b.detach().to("cpu", a.dtype))
            for a, b in zip(mine.parameters(), theirs.parameters(), strict=True)
        )
    )


def shared_cross_kv(cfg: Config, teacher, student, shares_encoder: bool) -> dict[int, int]:
    """``cross_kv_plan`` checked against the built models: the student's projections must be frozen plain
    linears holding the teacher layer's exact weights, and its encoder output the teacher's."""
    if not shares_encoder:
        return {}
    shared = {}
    for i, j in cross_kv_plan(cfg, teacher.config).items():
        mine = student.model.decoder.layers[i].encoder_attn
        theirs = teacher.model.decoder.layers[j].encoder_attn
        if all(_same_frozen_linear(getattr(mine, n), getattr(theirs, n)) for n in ("k_proj", "v_proj")):
            shared[i] = j
        else:
            log.warning("student decoder layer %d: cross-attention k/v differ from teacher layer %d", i, j)
    return shared


def provided_cross_kv(cfg: Config, shared: dict[int, int], offer: TeacherOffer, width: int) -> dict[int, int]:
    """The part of ``shared`` the teacher provider hands over, logged (with what a cache would cost)."""
    if not shared:
        return {}
    available = offer.cross_kv_layers
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
