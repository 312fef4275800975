"""The per-user cache folder: $GEODISTILL_CACHE, then $XDG_CACHE_HOME/geodistill, then ~/.cache/geodistill."""

from __future__ import annotations

from pathlib import Path

from geodistill.corpus.recordings import cache_root
from geodistill.paths import cache_dir


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("GEODISTILL_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "own"
    monkeypatch.delenv("GEODISTILL_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "geodistill"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "geodistill"


def test_relative_or_empty_xdg_cache_home_is_ignored(monkeypatch):
    monkeypatch.delenv("GEODISTILL_CACHE", raising=False)
    for value in ("relative/cache", ""):
        monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert cache_dir() == Path.home() / ".cache" / "geodistill"


def test_geodistill_cache_expands_user_and_the_demo_shares_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GEODISTILL_CACHE", "~/gd")
    assert cache_dir() == tmp_path / "gd" == cache_root()
