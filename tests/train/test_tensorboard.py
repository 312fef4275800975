"""open_writer: real event files on the main process, a no-op elsewhere, a clear error without tensorboard."""

from __future__ import annotations

import sys

import pytest

from geodistill.optional import MissingDependencyError
from geodistill.train.tensorboard import NullWriter, open_writer


def _scalars(log_dir, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_disabled_writer_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # must not even be imported when disabled
    writer = open_writer(tmp_path / "tb", purge_step=None, enabled=False)
    assert isinstance(writer, NullWriter)
    writer.add_scalar("train/loss", 1.0, 0)
    writer.close()
    assert not (tmp_path / "tb").exists()


def test_enabled_writer_writes_scalars_and_purges_on_resume(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is the optional extra geodistill[tensorboard]")
    log_dir = tmp_path / "tb"
    first = open_writer(log_dir, purge_step=None, enabled=True)
    for step in range(4):
        first.add_scalar("train/loss", float(step), step)
    first.close()
    assert _scalars(log_dir, "train/loss") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0)]
    resumed = open_writer(log_dir, purge_step=2, enabled=True)  # resumed after step 2: steps 2, 3 redone
    resumed.add_scalar("train/loss", 20.0, 2)
    resumed.close()
    assert _scalars(log_dir, "train/loss") == [(0, 0.0), (1, 1.0), (2, 20.0)]


def test_missing_tensorboard_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(
        MissingDependencyError,
        match=r"needs the 'tensorboard' package: pip install 'geodistill\[tensorboard\]'",
    ):
        open_writer(tmp_path / "tb", purge_step=None, enabled=True)
    assert not (tmp_path / "tb").exists()
