"""Fixtures for model-loading tests: an isolated conversion cache, the vendored tiny.en tokenizer + CT2
config (unit tests), and the embedded CT2 models (integration tests only)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from geodistill.errors import ModelLoadError
from geodistill.models.loading import Ct2Source, embedded_source
from tests.conftest import TINY_EN_CT2_CONFIG, TINY_EN_TOKENIZER


class TokenizerFiles(NamedTuple):
    tokenizer_file: Path  # tokenizer.json
    config_file: Path  # CTranslate2 config.json (suppression lists, alignment heads)


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
def tiny_en_files() -> TokenizerFiles:
    """tiny.en's real tokenizer.json and CT2 config.json, vendored in tests/fixtures (no weights package)."""
    return TokenizerFiles(TINY_EN_TOKENIZER, TINY_EN_CT2_CONFIG)


@pytest.fixture(scope="session")
def tiny_en_source() -> Ct2Source:
    """The embedded tiny.en CT2 files (integration tests; skips if geodistill[models] is not installed)."""
    return _embedded("tiny.en")


@pytest.fixture(scope="session")
def base_source() -> Ct2Source:
    """The embedded multilingual base CT2 files (integration tests; skips without geodistill[models])."""
    return _embedded("base")
