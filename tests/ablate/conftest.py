"""Ablation fixtures: the tuning tests' tiny study config (tiny random teacher, 8 training and 2 validation
utterances, 2 steps per cell with a validation after each) plus an ``ablate`` section."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geodistill.config import load_config
from tests.tune.conftest import tiny_data, tiny_teacher_dir, tune_config  # noqa: F401  (fixtures)


@pytest.fixture
def ablate_config(tune_config):  # noqa: F811
    """``make(name, ablate={...}, **sections)`` -> the YAML path of a tiny ablation (default 1 seed)."""

    def make(name: str = "ablation", ablate: dict | None = None, **sections) -> Path:
        path = tune_config(name, **sections)
        cfg = yaml.safe_load(path.read_text())
        cfg["ablate"] = {"seeds": 1, **(ablate or {})}
        path.write_text(yaml.safe_dump(cfg))
        return path

    return make


@pytest.fixture
def ablate_cfg(ablate_config):
    """Like ablate_config, but returns the loaded Config."""
    return lambda name="ablation", ablate=None, **sections: load_config(
        ablate_config(name, ablate, **sections)
    )
