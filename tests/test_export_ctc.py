"""geodistill export of a CTC student: a folder load_ctc reads back exactly, a card whose plain-torch code
reproduces the model, and a clear refusal of CTranslate2."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
import yaml

from geodistill.cli import main
from geodistill.errors import GeodistillError
from geodistill.export import export
from geodistill.students.ctc.decode import clip_features, transcribe_clips
from geodistill.students.ctc.model import CTCModel, CTCShape, CTCStudent, load_ctc
from tests.students.ctc_runs import SHAPE, random_ctc_dir, tiny_ctc_run  # noqa: F401  (fixtures)
from tests.train.conftest import tiny_data, tiny_teacher_dir  # noqa: F401  (the CTC run's fixtures)


def _clips() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [0.1 * rng.standard_normal(n).astype(np.float32) for n in (17000, 26000)]


def _log_probs(folder, clip: np.ndarray) -> torch.Tensor:
    model, processor = load_ctc(folder)
    feats, positions = clip_features(processor, [clip])
    with torch.no_grad():
        return model(feats, positions)[0]


def test_a_ctc_run_exports_to_a_folder_that_loads_with_identical_logits(tiny_ctc_run, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(tiny_ctc_run, run)
    (run / "eval-student").mkdir()
    evaluation = {"wer": 0.5, "rtf": 0.01, "data": "test.jsonl", "n_utterances": 3}
    (run / "eval-student" / "eval.json").write_text(json.dumps(evaluation))
    out = tmp_path / "export"
    assert main(["export", str(run), "--format", "hf", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {
        "model.safetensors",
        "ctc_config.json",
        "vocab.json",
        "preprocessor_config.json",
        "README.md",
    } <= names
    assert "projector.safetensors" not in names and "checkpoint.pt" not in names  # training parts stay behind
    for clip in _clips():
        assert torch.equal(_log_probs(out, clip), _log_probs(run / "best", clip))
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["pipeline_tag"] == "automatic-speech-recognition" and "ctc" in meta["tags"]
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 50.0  # the run's own eval.json
    assert "WER 50.00 %" in card and "CTC on the transcript's characters" in card


@pytest.mark.parametrize("downsample", [1, 3])
def test_the_model_card_loads_the_export_with_plain_torch(tiny_processor, tmp_path, downsample):
    torch.manual_seed(0)
    shape = CTCShape(**{**SHAPE.__dict__, "downsample": downsample})
    CTCStudent(CTCModel(shape).eval(), tiny_processor, torch.nn.ModuleDict(), "tiny").save(tmp_path / "s")
    out = export(tmp_path / "s", "hf", tmp_path / "export")
    card = (out / "README.md").read_text()
    for key in ("n_mels", "d_model", "layers", "heads", "ffn", "downsample", "vocab"):
        assert f"`{key}`" in card
    assert "0 the CTC blank, 1 ' ', 2 \"'\", 3 'a'" in card and "plain torch + safetensors" in card
    code = [block for block in re.findall(r"```python\n(.*?)```", card, re.S) if "load_file" in block][0]
    assert "geodistill" not in code
    namespace: dict = {}
    exec(code.replace('"PATH"', repr(str(out))), namespace)  # the card's code, as a reader would run it
    model, processor = load_ctc(out)
    for clip in _clips():
        feats, _ = clip_features(processor, [clip])
        with torch.no_grad():
            mine = namespace["model"](feats)
        assert torch.allclose(mine[0], _log_probs(out, clip), atol=1e-5)
        text = namespace["transcribe"](clip)
        assert text and text == transcribe_clips(model, processor, [clip])[0]


def test_ct2_export_of_a_ctc_student_is_refused_in_one_line(random_ctc_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "ct2"
    with pytest.raises(GeodistillError, match=r"^--format ct2: .* is a CTC student, and CTranslate2 has no"):
        export(random_ctc_dir, "ct2", out)
    assert main(["export", str(random_ctc_dir), "--format", "ct2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use --format hf" in err and not out.exists()
