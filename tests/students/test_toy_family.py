"""A student family is one folder plus one line: a toy family (tests/students/toy/) registered with one
``FAMILIES`` entry is trained, validated, evaluated, transcribed, exported, tuned and ablated through the
registry, with no other change anywhere."""

from __future__ import annotations

import pytest

from geodistill.ablate import default_variants
from geodistill.config import load_config
from geodistill.errors import GeodistillError
from geodistill.evaluate import evaluate, transcribe_files
from geodistill.export import export
from geodistill.students import FAMILIES, family_of, family_of_folder
from geodistill.train.loop import train
from geodistill.tune.space import default_space
from tests.students import toy


@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setitem(FAMILIES, "toy", toy.FAMILY)  # the one line (students/__init__.py's FAMILIES)
    toy.CALLS.clear()
    return toy.FAMILY


def test_a_registered_toy_family_trains_validates_evaluates_and_exports(
    toy_family, make_config, tiny_data, tmp_path
):
    cfg = load_config(make_config("toy", student={"init": "toy"}, train={"max_steps": 2, "eval_every": 2}))
    result = train(cfg)
    assert result.exit_code == 0 and result.step == 2
    assert toy.CALLS["build"] == 1 and toy.CALLS["objective"] == 1
    assert toy.CALLS["decode"] == 1  # the one validation, decoded by the family
    run = tmp_path / "toy"
    assert (run / "adapter_final" / toy.MARKER).is_file()
    assert family_of_folder(run / "adapter_final") is toy_family and family_of(str(run)) is toy_family

    _, val = tiny_data
    scored = evaluate(str(run), str(val), limit=2, device="cpu", beam_size=4)
    assert scored["family"] == "toy" and scored["beam_size"] == 1  # the family's check() applied
    assert toy.CALLS["check"] >= 1 and toy.CALLS["load"] >= 1

    out = export(str(run), "toy", tmp_path / "exported")
    assert (out / toy.MARKER).is_file() and (out / "model.safetensors").is_file()
    assert family_of_folder(out) is toy_family
    with pytest.raises(
        GeodistillError,
        match=r"--format ct2: .* is a toy student, and CTranslate2 has no such model; use --format toy",
    ):
        export(str(run), "ct2", tmp_path / "refused")


def test_tune_and_ablate_take_the_toy_familys_defaults(toy_family, make_config):
    cfg = load_config(make_config("toy", student={"init": "toy"}))
    assert set(default_variants(cfg)) == {"ce", "ce+kl"}
    assert "loss.temperature" not in default_space(cfg) and "loss.kl_weight" in default_space(cfg)


def test_an_unknown_student_init_names_the_registered_families(make_config):
    cfg = load_config(make_config("nope", student={"init": "nope"}))
    with pytest.raises(
        GeodistillError, match=r"student.init: no student family builds 'nope' \(known: .*ctc"
    ):
        train(cfg)


def test_transcribe_reaches_the_toy_family(toy_family, make_config, tiny_data, tmp_path):
    cfg = load_config(make_config("toy", student={"init": "toy"}, train={"max_steps": 1, "eval_every": 0}))
    assert train(cfg).exit_code == 0
    _, val = tiny_data
    texts = transcribe_files(str(tmp_path / "toy"), [val.parent / "va0.wav"], device="cpu")
    assert len(texts) == 1 and toy.CALLS["texts"] == 1
