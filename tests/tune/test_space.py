"""The search space and the study's settings are checked before any trial runs."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from geodistill.config import Config, ConfigError, load_config
from geodistill.errors import GeodistillError
from geodistill.tune import DEFAULT_SPACE, mask_url, search_space, trial_config, tune, write_plots


def test_default_space_is_the_seeds():
    space = search_space(Config())
    assert set(space) == set(DEFAULT_SPACE)
    for name in ("loss.kl_weight", "loss.geo_weight"):
        assert space[name] == FloatDistribution(1e-3, 10.0, log=True)
    assert space["train.lr"] == FloatDistribution(1e-5, 1e-3, log=True)
    assert space["train.batch_size"] == CategoricalDistribution([4, 8, 16, 32])
    assert space["student.lora.dropout"] == FloatDistribution(0.0, 0.5)
    assert space["loss.temperature"] == FloatDistribution(1.0, 5.0)  # the seed: avoid T > 5


def test_default_space_leaves_out_parameters_that_cannot_act():
    cfg = Config()
    cfg.student.lora.r = 0  # no adapters: their dropout does nothing
    cfg.loss.hidden_loss = "none"  # no hidden loss: its weight does nothing
    assert set(search_space(cfg)) == set(DEFAULT_SPACE) - {"student.lora.dropout", "loss.geo_weight"}
    ctc = load_config(None, ["student.init=ctc", "loss.hidden_on=encoder"])  # no decoder, no adapters
    assert set(search_space(ctc)) == {"loss.geo_weight", "train.lr", "train.batch_size"}


def test_yaml_space_entries_become_distributions():
    cfg = Config()
    cfg.tune.space = {
        "student.lora.r": {"type": "int", "low": 4, "high": 32, "step": 4},
        "loss.hidden_loss": {"type": "categorical", "choices": ["geodesic", "mse"]},
    }
    assert search_space(cfg) == {
        "student.lora.r": IntDistribution(4, 32, step=4),
        "loss.hidden_loss": CategoricalDistribution(["geodesic", "mse"]),
    }


def test_every_bad_space_entry_is_reported_in_one_error(tmp_path):
    cfg = Config(run_dir=str(tmp_path / "study"))
    cfg.tune.space = {
        "loss.kl_wieght": {"type": "float", "low": 0.1, "high": 1.0},  # typo
        "loss.temperature": {"type": "gaussian", "low": 1, "high": 2},  # unknown type
        "train.lr": {"type": "float", "low": 1e-3, "high": 1e-5, "log": True},  # low > high
        "loss.geo_weight": {"type": "float", "low": 0.0, "high": 1.0, "log": True},  # log of 0
        "student.lora.dropout": {"type": "float", "low": 0.0, "high": 1.5},  # config rejects 1.5
        "train.batch_size": {"type": "float", "low": 4, "high": 8},  # batch size must be an int
        "train.clip": {"type": "float", "low": 0.5, "high": 2.0, "mean": 1.0},  # unknown key
        "run_dir": {"type": "categorical", "choices": ["a", "b"]},  # the study folder is fixed
        "student.lora": {"type": "categorical", "choices": [1]},  # a section
        "train.seed": {"type": "categorical", "choices": []},
    }
    with pytest.raises(ConfigError) as err:
        search_space(cfg)
    text = str(err.value)
    for name in cfg.tune.space:
        assert f"tune.space.{name}" in text, name
    assert "no such config key" in text and "lora: need r >= 0, alpha > 0, 0 <= dropout < 1" in text
    assert "expected <class 'int'>" in text and "not tunable" in text and "unknown key(s) mean" in text
    # tune() stops on the same error before creating the study or running anything.
    with pytest.raises(ConfigError):
        tune(cfg, n_trials=1)
    assert not (tmp_path / "study" / "optuna.db").exists()


def test_trial_config_applies_dotted_params_without_touching_the_base(tmp_path):
    cfg = Config()
    out = trial_config(
        cfg,
        {"loss.kl_weight": 0.3, "student.lora.dropout": 0.2, "train.batch_size": 16},
        tmp_path / "trial-7",
        20,
    )
    assert (out.loss.kl_weight, out.student.lora.dropout, out.train.batch_size) == (0.3, 0.2, 16)
    assert out.train.max_steps == 20 and out.run_dir == str(tmp_path / "trial-7")
    assert (cfg.loss.kl_weight, cfg.train.max_steps, cfg.run_dir) == (0.020584, 10000, "runs/default")


def test_storage_passwords_are_masked():
    assert (
        mask_url("postgresql://tuner:s3cret@db.example:5432/optuna")
        == "postgresql://tuner:***@db.example:5432/optuna"
    )
    assert mask_url("sqlite:////tmp/x/optuna.db") == "sqlite:////tmp/x/optuna.db"
    assert "s3cret" not in mask_url("not a url s3cret")


def test_sqlite_with_several_workers_is_refused(tmp_path):
    cfg = Config(run_dir=str(tmp_path / "study"))
    for storage in (None, f"sqlite:///{tmp_path}/other.db"):
        with pytest.raises(GeodistillError, match="SQLite's file locking is unreliable"):
            tune(cfg, n_trials=2, storage=storage, workers=2)
    assert not (tmp_path / "study").exists() and not (tmp_path / "other.db").exists()


def test_bad_tuning_arguments_are_listed_together():
    cfg = Config()
    cfg.tune.steps = 0
    with pytest.raises(ConfigError) as err:
        tune(cfg, n_trials=0, timeout=-1, workers=0)
    for part in ("n_trials", "workers", "timeout", "tune.steps"):
        assert part in str(err.value)


def test_an_unreachable_database_is_one_clear_error_without_the_password(tmp_path):
    cfg = Config(run_dir=str(tmp_path / "study"))
    cfg.tune.space = {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-3}}
    # Port 9 on loopback (discard) has no PostgreSQL: the connection is refused at once.
    with pytest.raises(GeodistillError) as err:
        tune(cfg, n_trials=1, storage="postgresql://tuner:hunter2@127.0.0.1:9/optuna")
    text = str(err.value)
    assert "cannot open it" in text and "tuner:***@127.0.0.1:9" in text and "hunter2" not in text
    for written in (tmp_path / "study").rglob("*"):  # not in study.json, tune.log or anything else
        assert not written.is_file() or "hunter2" not in written.read_text(errors="replace")
    assert not (tmp_path / "study" / "study.json").exists()  # a storage that did not open claims nothing


def _study_with(values: list[float]) -> optuna.Study:
    study = optuna.create_study(direction="minimize")
    dists = {"a": FloatDistribution(0.0, 1.0), "b": FloatDistribution(0.0, 1.0)}
    for i, value in enumerate(values):
        study.add_trial(
            optuna.trial.create_trial(
                params={"a": i / 10, "b": 1 - i / 10},
                distributions=dists,
                value=value,
                intermediate_values={5: value + 1},
            )
        )
    return study


def test_plots_are_written_or_skipped_with_the_reason(tmp_path):
    notes = write_plots(_study_with([0.5, 0.3, 0.4]), tmp_path)
    assert set(notes.values()) == {"written"}
    for name in notes:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "tied").mkdir()
    tied = write_plots(_study_with([1.0, 1.0]), tmp_path / "tied")
    assert tied["param_importances.png"] == (
        "skipped: every complete trial has the same value: nothing for the parameters to explain"
    )
    assert not (tmp_path / "tied" / "param_importances.png").exists()
    empty = write_plots(optuna.create_study(), tmp_path / "empty")
    assert empty == {
        "optimization_history.png": "skipped: no complete trial yet",
        "param_importances.png": "skipped: needs >= 2 complete trials, the study has 0",
        "intermediate_values.png": "skipped: no trial has reported a validation WER yet",
    }
