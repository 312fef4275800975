"""A tiny finished run (real loop, tiny random teacher) with evaluations, and its report, built once."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodistill.config import load_config
from geodistill.evaluate.run import evaluate
from geodistill.train.loop import train
from tests.students.ctc_runs import tiny_ctc_run  # noqa: F401  (fixture)
from tests.train.conftest import four_step_config, tiny_data, tiny_teacher_dir, write_manifest  # noqa: F401  (fixtures)

N_REPORT = 6  # utterances in the hidden-state views: enough for t-SNE/UMAP, small enough to be quick


def tiny_run_config(run_dir: Path, teacher: Path, train_spec: Path, val_spec: Path, **loss) -> Path:
    """A 4-step run with decoder and encoder projectors (hidden_on=both) and two validations."""
    student = {"init": "copy", "decoder_layers": 1, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    base = {"kl_weight": 0.5, "kl_warmup_steps": 2, "geo_weight": 0.5, "hidden_on": "both"}
    return four_step_config(run_dir, teacher, train_spec, val_spec, student, {**base, **loss})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_teacher_dir, tiny_data) -> Path:  # noqa: F811
    """A finished tiny run whose folder also holds eval-teacher/ and eval-student/ (as the demo writes)."""
    train_spec, val_spec = tiny_data
    run_dir = tmp_path_factory.mktemp("report") / "run"
    cfg = load_config(tiny_run_config(run_dir, tiny_teacher_dir, train_spec, val_spec))
    assert train(cfg).exit_code == 0
    for role, model in (("teacher", str(tiny_teacher_dir)), ("student", str(run_dir))):
        evaluate(model, str(val_spec), out=run_dir / f"eval-{role}", device="cpu", max_new_tokens=16)
    return run_dir


@pytest.fixture(scope="session")
def built_report(tiny_run, tiny_data) -> Path:  # noqa: F811
    """index.html of the tiny run's report on the first N_REPORT training utterances."""
    from geodistill.report import build_report

    return build_report(tiny_run, data=str(tiny_data[0]), n=N_REPORT, device="cpu")
