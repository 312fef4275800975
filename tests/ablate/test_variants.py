"""Bad variants are one ConfigError before any compute: nothing is trained and no study is created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from geodistill.ablate import ablate, ablation_variants, default_variants
from geodistill.config import ConfigError


def test_the_built_in_variants_switch_the_loss_terms_with_the_base_weights(ablate_cfg):
    cfg = ablate_cfg("variants")  # kl_weight 0.5, geo_weight 0.5
    v = ablation_variants(cfg)
    assert list(v) == ["ce", "ce+kl", "ce+kl+mse", "ce+kl+geo", "ce+kl+geo+taid", "kl+geo"]
    assert v["ce"]["loss.kl_weight"] == 0 and v["ce"]["loss.hidden_loss"] == "none"
    assert v["ce+kl"]["loss.kl_weight"] == 0.5 and v["ce+kl"]["loss.hidden_loss"] == "none"
    assert (v["ce+kl+mse"]["loss.hidden_loss"], v["ce+kl+mse"]["loss.geo_weight"]) == ("mse", 0.5)
    assert (v["ce+kl+geo"]["loss.hidden_loss"], v["ce+kl+geo"]["loss.taid"]) == ("geodesic", "off")
    assert v["ce+kl+geo+taid"]["loss.taid"] == "adaptive"
    assert v["kl+geo"]["loss.ce_weight"] == 0 and v["kl+geo"]["loss.hidden_loss"] == "geodesic"
    # A term the base config switched off comes back at the seed's weight, not at 0.
    assert default_variants(ablate_cfg("off", loss={"kl_weight": 0.0}))["ce+kl"]["loss.kl_weight"] == 0.020584


def test_user_variants_nested_or_dotted_run_after_the_built_in_ones(ablate_cfg):
    cfg = ablate_cfg(
        "mine",
        ablate={"variants": {"lr-low": {"train": {"lr": 1e-4}}, "t3": {"loss.temperature": 3.0}}},
    )
    v = ablation_variants(cfg)
    assert list(v)[-2:] == ["lr-low", "t3"]
    assert v["lr-low"] == {"train.lr": 1e-4} and v["t3"] == {"loss.temperature": 3.0}


def test_bad_variants_are_one_error_naming_each_before_any_compute(ablate_cfg):
    bad = {
        "new-teacher": {"teacher": "tiny.en"},
        "more-data": {"data.train": "elsewhere.jsonl"},
        "longer": {"train.max_steps": 100},
        "lucky": {"train": {"seed": 7}},
        "typo": {"loss.kl_wieght": 0.1},
        "negative": {"loss.kl_weight": -1.0},
    }
    cfg = ablate_cfg("bad", ablate={"variants": bad, "run": ["ce", "nope", *bad]})
    with pytest.raises(ConfigError) as err:
        ablate(cfg)
    text = str(err.value)
    assert "ablate.run: unknown variant 'nope'" in text
    assert "ablate.variants.new-teacher.teacher: a variant may not change it (the teacher" in text
    assert "ablate.variants.more-data.data.train: a variant may not change it (every cell trains" in text
    assert "ablate.variants.longer.train.max_steps: a variant may not change it" in text
    assert "ablate.variants.lucky.train.seed: a variant may not change it" in text
    assert "ablate.variants.typo.loss.kl_wieght: no such config key" in text
    assert "ablate.variants.negative: gives an invalid config (loss.kl_weight: must be >= 0" in text
    # issue 28 (12c): errors are one line, so the seven problems are joined by "; ", nothing about ce
    assert len(text.splitlines()) == 1 and text.count("; ablate.") == 6
    assert not Path(cfg.run_dir).exists()  # no study, no teacher cache, no run folder


def test_the_cli_refuses_an_unknown_variant_with_exit_2(ablate_config):
    path = ablate_config("cli-bad")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geodistill.cli",
            "ablate",
            "--config",
            str(path),
            "--variants",
            "ce",
            "ce+foo",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: invalid ablation:") and "unknown variant 'ce+foo'" in done.stderr
    assert not (path.parent / "cli-bad").exists()
    # key=value after --variants is an override, not a variant name (argparse hands it to --variants).
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geodistill.cli",
            "ablate",
            "--config",
            str(path),
            "--variants",
            "ce",
            "tune.steps=0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "tune.steps: must be >= 1, got 0" in done.stderr, done.stderr


def test_ablate_without_scipy_names_the_extra_before_any_compute(ablate_config, monkeypatch, capsys):
    from geodistill.cli import main

    monkeypatch.setitem(sys.modules, "scipy", None)  # what `import scipy` sees when it is not installed
    path = ablate_config("noscipy")
    assert main(["ablate", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "error: geodistill ablate needs scipy, which is not installed: pip install 'geodistill[tune]'\n"
    )
    assert not (path.parent / "noscipy").exists()
