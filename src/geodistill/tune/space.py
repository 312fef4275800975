"""The search space: the seed's default, the user's ``tune.space`` checked as Optuna distributions, and a
trial's config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from geodistill.config import Config, ConfigError, from_dict, merge, to_dict, validate

log = logging.getLogger("geodistill.tune")  # one logger for the package: _study_log attaches to it

# The seed's space. Loss weights and lr on a log scale; the seed warns against temperatures above 5.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "loss.kl_weight": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
    "loss.geo_weight": {"type": "float", "low": 1e-3, "high": 10.0, "log": True},
    "train.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
    "train.batch_size": {"type": "categorical", "choices": [4, 8, 16, 32]},
    "student.lora.dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "loss.temperature": {"type": "float", "low": 1.0, "high": 5.0},
}
SEED_MAX_TEMPERATURE = 5.0  # "avoid T > 5": softer targets wash out the teacher's ranking
SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
# Not tunable: the study's own settings, the shared teacher, and the budget (tune.steps sets max_steps).
# The data too: the teacher cache is built once over it.
FIXED = ("run_dir", "teacher", "teacher_cache", "data", "tune", "train.max_steps")


def default_space(cfg: Config) -> dict[str, dict[str, Any]]:
    """The seed's space without parameters that cannot act in this config (they would only add noise)."""
    space = dict(DEFAULT_SPACE)
    if cfg.student.lora.r == 0:
        space.pop("student.lora.dropout")
    if cfg.loss.hidden_loss == "none":
        space.pop("loss.geo_weight")
    from geodistill.students import family_for_init  # noqa: PLC0415 (tune workers start light; the training stack loads with the first trial)

    for name in family_for_init(cfg.student.init).untuned:  # e.g. a CTC student: no KL, no LoRA
        space.pop(name, None)
    return space


def _distribution(where: str, spec: Any, problems: list[str]) -> BaseDistribution | None:
    if not isinstance(spec, dict):
        problems.append(
            f"{where}: expected a mapping like {{type: float, low: 0.0, high: 1.0}}, got {spec!r}"
        )
        return None
    kind = spec.get("type")
    if kind not in SPEC_KEYS:
        problems.append(f"{where}.type: must be one of {', '.join(SPEC_KEYS)}, got {kind!r}")
        return None
    unknown = sorted(set(spec) - SPEC_KEYS[kind])
    if unknown:
        problems.append(
            f"{where}: unknown key(s) {', '.join(unknown)} for type {kind} "
            f"(known: {', '.join(sorted(SPEC_KEYS[kind]))})"
        )
        return None
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.append(f"{where}.choices: must be a non-empty list, got {choices!r}")
        elif not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
            problems.append(
                f"{where}.choices: each choice must be a number, string, bool or null, got {choices!r}"
            )
        else:
            return CategoricalDistribution(choices)
        return None
    number = int if kind == "int" else int | float
    bad = [k for k in ("low", "high") if not isinstance(spec.get(k), number) or isinstance(spec.get(k), bool)]
    if bad or not isinstance(spec.get("log", False), bool):
        problems.append(f"{where}: needs {kind} low and high (and log: true/false), got {spec!r}")
        return None
    try:
        if kind == "int":
            return IntDistribution(
                spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step", 1)
            )
        return FloatDistribution(spec["low"], spec["high"], log=spec.get("log", False), step=spec.get("step"))
    except (ValueError, TypeError) as exc:
        problems.append(f"{where}: {exc}")
        return None


def config_leaf(tree: dict[str, Any], name: str, where: str, problems: list[str]) -> bool:
    """True when ``name`` (dotted) is a settable leaf of the config tree ``tree`` (``to_dict(cfg)``) and not
    one of the study's FIXED settings; otherwise appends why to ``problems`` (prefixed by ``where``)."""
    if any(name == f or name.startswith(f + ".") for f in FIXED):
        problems.append(f"{where}: not tunable (fixed for the whole study: {', '.join(FIXED)})")
        return False
    node: Any = tree
    for depth, part in enumerate(name.split(".")):
        if not isinstance(node, dict) or part not in node:
            parent = ".".join(name.split(".")[:depth]) or "the config"
            known = ", ".join(sorted(node)) if isinstance(node, dict) else "nothing (a value)"
            problems.append(f"{where}: no such config key ({parent} has: {known})")
            return False
        node = node[part]
    if isinstance(node, dict):
        problems.append(f"{where}: names a section, not a value (e.g. {name}.{next(iter(node), '...')})")
        return False
    return True


def _extremes(dist: BaseDistribution) -> list[Any]:
    return list(dist.choices) if isinstance(dist, CategoricalDistribution) else [dist.low, dist.high]


def search_space(cfg: Config) -> dict[str, BaseDistribution]:
    """``cfg.tune.space`` (or the seed's space) as Optuna distributions, checked before any trial.

    Each entry must name a config value and produce a valid config at both ends of its range (each
    choice); one ConfigError lists every bad entry.
    """
    raw = cfg.tune.space if cfg.tune.space is not None else default_space(cfg)
    if not raw:
        raise ConfigError("tune.space: empty; give at least one parameter (or omit it for the seed's space)")
    problems: list[str] = []
    tree = to_dict(cfg)
    space: dict[str, BaseDistribution] = {}
    for name, spec in raw.items():
        where = f"tune.space.{name}"
        dist = _distribution(where, spec, problems)
        if dist is None or not config_leaf(tree, name, where, problems):
            continue
        for value in _extremes(dist):
            try:
                trial_config(cfg, {name: value}, cfg.run_dir, 1)
            except ConfigError as exc:
                reasons = "; ".join(line.strip() for line in str(exc).splitlines()[1:]) or str(exc)
                problems.append(f"{where}: value {value!r} gives an invalid config ({reasons})")
        space[name] = dist
    if problems:
        raise ConfigError("invalid tune.space:\n  " + "\n  ".join(problems))
    temp = space.get("loss.temperature")
    if temp is not None and max(_extremes(temp)) > SEED_MAX_TEMPERATURE:
        log.warning(
            "tune.space.loss.temperature reaches %s: the seed advises T <= %s",
            max(_extremes(temp)),
            SEED_MAX_TEMPERATURE,
        )
    return space


def trial_config(cfg: Config, params: dict[str, Any], run_dir: str | Path, steps: int) -> Config:
    """``cfg`` with dotted ``params`` applied, its own ``run_dir`` and a ``steps`` budget; validated."""
    tree: dict[str, Any] = {"run_dir": str(run_dir), "train": {"max_steps": steps}}
    for name, value in params.items():
        *parents, leaf = name.split(".")
        update: dict[str, Any] = {leaf: value}
        for part in reversed(parents):
            update = {part: update}
        tree = merge(tree, update)
    out = from_dict(merge(to_dict(cfg), tree))
    validate(out)
    return out


def suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    """``trial``'s value for parameter ``name`` drawn from ``dist`` (categorical, int or float)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
