"""``validate``: value ranges and combinations of a built config, every problem collected into one error."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import fields
from typing import Any

from geodistill.config.errors import config_error
from geodistill.config.lora import lora_patterns
from geodistill.config.schema import TRACKERS, Config, LoraConfig, family_sections, tracker_names, yaml_key
from geodistill.errors import GeodistillError


def _check_layers(value: int | list[int] | None, where: str, problems: list[str]) -> None:
    if value is None:
        return
    if isinstance(value, int) and value < 1:
        problems.append(f"{where}: a layer count must be >= 1, got {value}")
    if isinstance(value, list) and (not value or any(not isinstance(i, int) or i < 0 for i in value)):
        problems.append(f"{where}: an explicit layer list must be non-empty indices >= 0, got {value}")


def _check_finite(obj: Any, where: str, problems: list[str]) -> None:
    """Every float field of a config (sub)tree must be finite: ``nan <= 0`` is False, so range checks
    alone let NaN through."""
    for f in fields(obj):
        value, key = getattr(obj, f.name), f"{where}{yaml_key(f.name)}"
        if dataclasses.is_dataclass(value):
            _check_finite(value, f"{key}.", problems)
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{key}: must be a finite number, got {value}")


def _check_targets(lora: LoraConfig, problems: list[str]) -> None:
    """student.lora.targets: a known preset, or regexes that compile (caught here, not after the teacher
    loads)."""
    targets = lora.targets
    if isinstance(targets, list) and not all(isinstance(x, str) and x for x in targets):
        problems.append(f"student.lora.targets: a regex list must hold non-empty strings, got {targets!r}")
        return
    try:
        patterns = lora_patterns(targets)
    except GeodistillError as exc:
        problems.append(str(exc))
        return
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"student.lora.targets: {pattern!r} is not a valid regular expression ({exc})")


def _check_report_to(report_to: str | list[str], problems: list[str]) -> None:
    """train.report_to: known tracker names, each once; "none" only alone."""
    names = tracker_names(report_to)
    where = "train.report_to"
    if not all(isinstance(n, str) for n in names):
        problems.append(f"{where}: expected tracker names, got {report_to!r}")
    elif "none" in names:
        problems.append(f"{where}: 'none' turns logging off and cannot be combined with {report_to!r}")
    elif unknown := [n for n in names if n not in TRACKERS]:
        problems.append(
            f"{where}: unknown tracker {unknown[0]!r} (choose from {', '.join(TRACKERS)}, or none)"
        )
    elif len(set(names)) < len(names):
        problems.append(f"{where}: a tracker is listed twice in {report_to!r}")


def _check_combinations(cfg: Config, problems: list[str]) -> None:
    """Settings that contradict each other (each would otherwise be ignored without a word)."""
    s, t = cfg.student, cfg.train
    if s.init == "copy" and s.from_:
        problems.append(
            f"student.from: {s.from_!r} is only used with student.init: pretrained (init is 'copy', "
            "which copies the teacher's layers); drop it or set init: pretrained"
        )
    if not 0.0 <= s.vocab_min_prob < 1.0:
        problems.append(f"student.vocab_min_prob: {s.vocab_min_prob} is not a probability in [0, 1)")
    if s.vocab == "trimmed" and s.init == "ctc":
        problems.append(
            "student.vocab: trimmed cuts a Whisper student's output vocabulary; a ctc student has its own "
            "(student.ctc.vocab); use vocab: full"
        )
    if cfg.teacher_cache_cross_kv and not cfg.teacher_cache:
        problems.append("teacher_cache_cross_kv: true needs teacher_cache (the folder that stores them)")
    if t.amp != "no" and t.device.split(":")[0] in ("cpu", "mps"):
        problems.append(f"train.amp: {t.amp} needs CUDA but train.device is {t.device!r}; use amp: no")
    for name, section in family_sections(s):  # a student family's own settings (student.ctc, ...)
        if s.init == section.init:
            problems += section.problems(cfg.loss)
        elif section != type(section)():
            problems.append(
                f"student.{name}: only used with student.init: {section.init} (init is {s.init!r}); drop it"
            )
    problems += cfg.data.augment.problems()
    if (
        cfg.data.augment.speed > 0
        and cfg.teacher_cache
        and cfg.loss.hidden_active
        and cfg.loss.hidden_on != "decoder"
    ):
        problems.append(
            "data.augment.speed: the teacher cache's encoder states are of the unperturbed audio, so they "
            "no longer line up in time with a sped-up clip; use loss.hidden_on: decoder, no cache, "
            "or speed: 0"
        )
    if cfg.data.val_limit is not None and cfg.data.val_limit < 1:
        problems.append(f"data.val_limit: must be >= 1 (or null for all), got {cfg.data.val_limit}")


def validate(cfg: Config, earlier: list[str] | None = None) -> None:
    """Check value ranges and combinations; raise one ConfigError listing every problem (``earlier``
    ones, found while loading, first)."""
    p: list[str] = list(earlier or [])
    s, lo, d, t = cfg.student, cfg.loss, cfg.data, cfg.train
    _check_finite(cfg, "", p)
    _check_combinations(cfg, p)
    if s.lora.r > 0:
        _check_targets(s.lora, p)
    if s.init == "pretrained" and not s.from_:
        p.append("student.from: required when student.init is 'pretrained'")
    _check_layers(s.encoder_layers, "student.encoder_layers", p)
    _check_layers(s.decoder_layers, "student.decoder_layers", p)
    if not 0 <= s.context_margin <= 1500:
        p.append(f"student.context_margin: must be in 0..1500 encoder positions, got {s.context_margin}")
    if s.context_jitter < 0:
        p.append(f"student.context_jitter: must be >= 0, got {s.context_jitter}")
    if s.lora.r < 0 or s.lora.alpha <= 0 or not 0 <= s.lora.dropout < 1:
        p.append("student.lora: need r >= 0, alpha > 0, 0 <= dropout < 1")
    for name in ("ce_weight", "kl_weight", "geo_weight"):
        if getattr(lo, name) < 0:
            p.append(f"loss.{name}: must be >= 0, got {getattr(lo, name)}")
    if lo.temperature <= 0:
        p.append(f"loss.temperature: must be > 0, got {lo.temperature}")
    if not 0 <= lo.taid_start < 1:
        p.append(f"loss.taid_start: must be in [0, 1), got {lo.taid_start}")
    if d.min_duration < 0 or d.max_duration <= d.min_duration:
        p.append(f"data: need 0 <= min_duration < max_duration, got {d.min_duration}..{d.max_duration}")
    if d.max_duration > 30.0:
        p.append(f"data.max_duration: Whisper sees at most 30 s, got {d.max_duration}")
    if not 0 <= d.timestamp_probability <= 1:
        p.append(f"data.timestamp_probability: must be in [0, 1], got {d.timestamp_probability}")
    if not 0 < d.val_fraction < 1:
        p.append(f"data.val_fraction: must be in (0, 1), got {d.val_fraction}")
    for name in ("max_steps", "batch_size", "grad_accum", "log_every", "max_bad_steps"):
        if getattr(t, name) < 1:
            p.append(f"train.{name}: must be >= 1, got {getattr(t, name)}")
    for name in ("warmup_steps", "eval_every", "save_every", "num_workers"):
        if getattr(t, name) < 0:
            p.append(f"train.{name}: must be >= 0, got {getattr(t, name)}")
    _check_report_to(t.report_to, p)
    if t.lr <= 0 or t.weight_decay < 0 or t.clip <= 0:
        p.append("train: need lr > 0, weight_decay >= 0, clip > 0")
    if not cfg.run_dir:
        p.append("run_dir: must be set")
    if p:
        raise config_error(p)
