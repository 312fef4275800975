"""Fixtures for model-loading tests: an isolated conversion cache and the embedded tiny.en CT2 files."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodistill.errors import ModelLoadError
from geodistill.models.loading import Ct2Source, embedded_source


@pytest.fixture
def gd_cache(tmp_path, monkeypatch) -> Path:
    """GEODISTILL_CACHE pointed at an empty per-test folder."""
    path = tmp_path / "gd-cache"
    monkeypatch.setenv("GEODISTILL_CACHE", str(path))
    return path


def _embedded(name: str) -> Ct2Source:
    try:
        return embedded_source(name)
    except ModelLoadError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tiny_en_source() -> Ct2Source:
    """The embedded tiny.en CT2 files (skips if geodistill[models] is not installed)."""
    return _embedded("tiny.en")


@pytest.fixture(scope="session")
def base_source() -> Ct2Source:
    """The embedded multilingual base CT2 files (skips if geodistill[models] is not installed)."""
    return _embedded("base")
