"""The config's error: ``ConfigError``, built from every problem found (``config_error``)."""

from __future__ import annotations

import typing
from typing import Any

from geodistill.errors import GeodistillError


class ConfigError(GeodistillError, ValueError):
    """Raised with every problem of a config listed, one per line."""


def config_error(problems: list[str]) -> ConfigError:
    """One line for one problem (``invalid config: train.lr: ...``), else one problem per line."""
    if len(problems) == 1:
        return ConfigError(f"invalid config: {problems[0]}")
    return ConfigError("invalid config:\n  " + "\n  ".join(problems))


def choice_problem(value: Any, hint: Any, where: str) -> str | None:
    """The problem of a choice (``Literal``) field set to ``value``, or None when it is a choice."""
    choices = typing.get_args(hint)
    return None if value in choices else f"{where}: must be one of {choices}, got {value!r}"
