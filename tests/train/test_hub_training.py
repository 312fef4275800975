"""train() on a streamed hub: spec (offline: local parquet through the same code path): it trains, the
checkpoint records the stream position, and a resumed run continues exactly."""

from __future__ import annotations

import math

import pytest

from geodistill.config import load_config
from geodistill.data import hub
from geodistill.errors import DataError
from geodistill.train import loop
from geodistill.train.loop import train
from tests.data.test_hub import _parquet, hub_rows, short_shutdown_sleep, write_hub_folder

pytest.importorskip("datasets")


@pytest.fixture(autouse=True)
def _short_shutdown_sleep(monkeypatch):
    short_shutdown_sleep(monkeypatch)


@pytest.fixture
def hub_spec(tmp_path, monkeypatch) -> str:
    files = _parquet(tmp_path / "pq")
    local = [hub.HubSource("parquet", None, "train", {"data_files": {"train": files}})]
    monkeypatch.setattr(hub, "parse_hub_spec", lambda spec: local)  # the Hub itself is not reachable here
    short_shutdown_sleep(monkeypatch)
    return "hub:local/speech:train"


def test_training_streams_a_hub_spec_and_resumes_exactly(make_config, tiny_data, hub_spec, monkeypatch):
    data = {"train": hub_spec, "val": str(tiny_data[1])}
    steps = {"max_steps": 4, "eval_every": 0, "save_every": 2, "grad_accum": 1}
    whole = train(load_config(make_config("whole", data=data, train=steps)))
    assert whole.exit_code == 0 and len(whole.history["train"]) == 4
    real_step, calls = loop.Session.train_step, []

    def dies_in_step_3(session):
        calls.append(1)
        if len(calls) == 3:  # after the step-2 checkpoint (which holds the stream's position)
            raise KeyboardInterrupt
        return real_step(session)

    cfg = load_config(make_config("cut", data=data, train=steps))
    monkeypatch.setattr(loop.Session, "train_step", dies_in_step_3)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(loop.Session, "train_step", real_step)
    resumed = train(cfg)  # same run_dir: resumes at step 2 with the next streamed examples
    for a, b in zip(whole.history["train"], resumed.history["train"], strict=True):
        assert a["step"] == b["step"] and a["total"] == pytest.approx(b["total"], abs=1e-6)


def test_a_streamed_spec_needs_its_own_validation_data(make_config, hub_spec):
    with pytest.raises(DataError, match="data.val: a streamed data.train"):
        train(load_config(make_config("noval", data={"train": hub_spec, "val": None})))


def test_training_streams_a_local_folder_in_the_hub_layout(make_config, tiny_data, tmp_path):
    """No monkeypatching: ``hub:<folder>:train`` goes through load_dataset(folder, streaming=True) as a Hub id
    would, and the bad rows are logged to the run's bad_samples.jsonl."""
    write_hub_folder(tmp_path / "set", "train", hub_rows(6, corrupt=(2,), empty=(4,)))
    data = {"train": f"hub:{tmp_path / 'set'}:train", "val": str(tiny_data[1])}
    steps = {"max_steps": 2, "eval_every": 0, "save_every": 0, "grad_accum": 1, "batch_size": 2}
    result = train(load_config(make_config("folder", data=data, train=steps)))
    assert result.exit_code == 0 and [h["step"] for h in result.history["train"]] == [1, 2]
    assert all(math.isfinite(h["total"]) for h in result.history["train"])
    skipped = (result.run_dir / "bad_samples.jsonl").read_text()
    assert "hub://u02" in skipped and "hub://u04" in skipped
