"""Loading a config: YAML presets, dotted ``key=value`` overrides, dict <-> dataclass conversion."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from geodistill.config.checks import validate
from geodistill.config.errors import ConfigError, choice_problem, config_error
from geodistill.config.presets import config_source
from geodistill.config.schema import Config, field_name, yaml_key


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as a plain dict with YAML key names (``from`` rather than ``from_``)."""

    def rename(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {yaml_key(k): rename(v) for k, v in obj.items()}
        return obj

    return rename(asdict(cfg))


def _build(cls: type, data: dict[str, Any], where: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in (data or {}).items():
        name = field_name(key)
        if name not in names:
            problems.append(
                f"{where}{key}: unknown key (known: {', '.join(sorted(yaml_key(n) for n in names))})"
            )
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                problems.append(f"{where}{key}: expected a mapping, got {value!r}")
                continue
            kwargs[name] = _build(hint, value, f"{where}{key}.", problems)
        else:
            kwargs[name] = _coerce(value, hint, f"{where}{key}", problems)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str, problems: list[str]) -> Any:
    """Accept ``value`` if it fits ``hint`` (ints widen to floats); otherwise record a problem."""
    if typing.get_origin(hint) is Literal:
        problem = choice_problem(value, hint, where)
        if problem is None:
            return value
        problems.append(_ChoiceProblem(problem))
        return typing.get_args(hint)[0]  # a stand-in so validate() can still check the rest
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for opt in options:
        origin = typing.get_origin(opt) or opt
        if opt is type(None) and value is None:
            return None
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if origin is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool, list, dict) and isinstance(value, origin):
            return value
        if origin is Any:
            return value
    problems.append(f"{where}: expected {hint}, got {value!r}")
    return value


def yaml_reason(exc: yaml.YAMLError) -> str:
    """One line saying what is wrong in a YAML text and where (PyYAML's own message spans five lines)."""
    problem = str(getattr(exc, "problem", None) or exc).strip().splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    hint = ": YAML indents with spaces, not tabs" if "'\\t'" in problem else ""
    return f"{problem}{where}{hint}"


def _override_value(item: str, raw: str) -> Any:
    """The YAML value of one override; a ConfigError naming the override when it does not parse."""
    if not raw.strip():
        return None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        reason = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({reason})") from None


def _set_dotted(tree: dict[str, Any], item: str, key: str, value: Any) -> None:
    """``tree[a][b][c] = value`` for ``key`` "a.b.c"; ConfigError naming ``item`` when it contradicts an
    earlier override (``train.lr=1 train.lr.x=2``: train.lr cannot be both a value and a section)."""
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r}: empty part in the dotted key {key.strip()!r}")
    node = tree
    for depth, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(parts[: depth + 1])
            raise ConfigError(f"override {item!r}: {where} was set to a value by an earlier override")
    if isinstance(node.get(parts[-1]), dict):
        raise ConfigError(f"override {item!r}: earlier overrides set keys below {key.strip()}")
    node[parts[-1]] = value


def parse_overrides(overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """``["train.lr=1e-4", "student.decoder_layers=[0,3]"]`` -> nested dict (values parsed as YAML).

    A mapping of dotted keys to values (``{"train.lr": 1e-4}``, the Python API's form) nests the same way,
    its values taken as they are. Raises ConfigError naming the override when it is not ``key=value``, its
    value is not YAML, or it contradicts an earlier one.
    """
    tree: dict[str, Any] = {}
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            _set_dotted(tree, f"{key}={value!r}", str(key), value)
        return tree
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        _set_dotted(tree, item, key, _override_value(item, raw))
    return tree


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class _ChoiceProblem(str):
    """A bad choice value, replaced by a valid stand-in: the config can still be validated around it."""


def _build_config(data: dict[str, Any]) -> tuple[Config, list[str]]:
    problems: list[str] = []
    cfg = _build(Config, data, "", problems)
    if any(not isinstance(p, _ChoiceProblem) for p in problems):  # wrong types: validate() cannot run
        raise config_error(problems)
    return cfg, problems


def from_dict(data: dict[str, Any]) -> Config:
    cfg, problems = _build_config(data)
    if problems:
        raise config_error(problems)
    return cfg


def read_yaml(source: str | Path) -> dict[str, Any]:
    """The mapping in a YAML config file, or in the shipped preset that ``source`` names (``dynamic-cpu``)."""
    path = config_source(source)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({yaml_reason(exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def load_config(
    source: str | Path | Mapping[str, Any] | None = None,
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
) -> Config:
    """Read a config (a YAML file, a shipped preset's name, or a mapping; None: the defaults), apply the
    dotted overrides (``"key=value"`` strings or a ``{dotted key: value}`` mapping), validate."""
    if source is None or isinstance(source, Mapping):
        data = dict(source or {})
    else:
        data = read_yaml(source)
    cfg, problems = _build_config(merge(data, parse_overrides(overrides or [])))
    validate(cfg, problems)
    return cfg
