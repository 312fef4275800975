"""One call loads a CTC student from its run folder, best/, adapter_final/ or folder; errors are one line."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from geodistill.errors import ModelLoadError
from geodistill.export import run_student_dir
from geodistill.report.runinfo import read_run
from geodistill.students import FAMILIES, family_of
from geodistill.students.ctc.model import load_ctc


def is_ctc_spec(spec) -> bool:
    """The registry's answer: a spec (or a loaded pair) whose family is the CTC student's."""
    return family_of(spec) is FAMILIES["ctc"]


def test_a_run_folder_loads_its_best_student(tiny_ctc_run, random_ctc_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_ctc_run, run, ignore=shutil.ignore_patterns("best"))
    final = load_file(run / "adapter_final" / "model.safetensors")
    assert torch.equal(load_ctc(run)[0].head.weight, final["head.weight"])  # no best/: adapter_final/
    shutil.copytree(random_ctc_dir, run / "best")  # a different model than adapter_final's
    best = load_file(run / "best" / "model.safetensors")
    assert not torch.equal(best["head.weight"], final["head.weight"])
    for spec, want in [(run, best), (run / "best", best), (run / "adapter_final", final)]:
        model, processor = load_ctc(spec)
        assert not model.training and processor.feature_extractor.feature_size == 80
        assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())
        assert is_ctc_spec(spec) and is_ctc_spec(str(spec))
    assert run_student_dir(run) == read_run(run).student_dir == run / "best"


def test_whisper_specs_are_not_ctc(tiny_teacher_dir, tmp_path):
    assert not any(is_ctc_spec(s) for s in (tiny_teacher_dir, "tiny.en", "openai/whisper-tiny", tmp_path))
    assert not is_ctc_spec((torch.nn.Linear(1, 1), None))


def test_an_unloadable_ctc_folder_is_a_one_line_error(random_ctc_dir, tiny_teacher_dir, tmp_path):
    with pytest.raises(ModelLoadError, match=r"no ctc_config\.json in .* \(not a saved CTC student\)"):
        load_ctc(tiny_teacher_dir)
    with pytest.raises(ModelLoadError, match="no config.json and no best/ or adapter_final/"):
        load_ctc(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(random_ctc_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelLoadError, match="is not a loadable CTC student") as info:
        load_ctc(broken)
    assert "\n" not in str(info.value)
