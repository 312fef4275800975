"""Model cards that tell the truth about the runtime: a dynamic-context student's card says which runtimes
keep its short audio context, and its CTranslate2 snippet runs verbatim; a full-context card says none of
this; the title comes from --name and the dataset is named, not a local path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from geodistill.cli import main
from geodistill.evaluate import transcribe_files
from tests.conftest import make_tiny_whisper

pytest.importorskip("ctranslate2")


def _save(folder: Path, processor, dynamic: bool) -> Path:
    model = make_tiny_whisper(d_model=32, layers=1, seed=11, ffn=4 * 32)  # 4 x d_model: whisper.cpp's MLP
    if dynamic:
        model.config.geodistill_audio_context, model.config.geodistill_context_margin = "dynamic", 16
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder.parent / "eval").mkdir(exist_ok=True)
    return folder


def _export(source: Path, out: Path, fmt: str, *extra: str) -> str:
    assert main(["export", str(source), "--format", fmt, "--out", str(out), *extra]) == 0
    return (out / "README.md").read_text()


def test_the_ct2_cards_snippet_runs_verbatim_and_keeps_the_short_context(tmp_path, tiny_processor):
    out = tmp_path / "ct2"
    card = _export(_save(tmp_path / "dyn", tiny_processor, dynamic=True), out, "ct2")
    assert "keep it short, or lose the speed-up" in card and "+ 16)" in card
    snippet = card.split("With CTranslate2 directly")[1].split("```python\n")[1].split("```")[0]
    wav = tmp_path / "speech.wav"
    t = np.arange(int(16000 * 2.3)) / 16000
    sf.write(wav, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    code = snippet.replace('"PATH"', json.dumps(str(out))).replace('"speech.wav"', json.dumps(str(wav)))
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    ours = transcribe_files(str(out), [wav], engine="ct2", device="cpu")[0]
    assert ran.stdout.strip() == ours  # the snippet decodes what geodistill's own ct2 engine decodes


def test_a_full_context_card_says_nothing_of_audio_context(tmp_path, tiny_processor):
    card = _export(_save(tmp_path / "full", tiny_processor, dynamic=False), tmp_path / "hf", "hf")
    assert "audio context" not in card.lower() and "geodistill_context_margin" not in card
    assert 'pipeline("automatic-speech-recognition"' in card


def test_the_hf_card_of_a_dynamic_student_warns_that_the_pipeline_pads(tmp_path, tiny_processor):
    card = _export(_save(tmp_path / "dyn", tiny_processor, dynamic=True), tmp_path / "hf", "hf")
    assert re.search(r"pad every clip to 30 s", card) and "geodistill transcribe PATH" in card


def test_the_title_comes_from_name_and_the_dataset_is_not_a_local_path(tmp_path, tiny_processor):
    run = tmp_path / "run"
    _save(run / "best", tiny_processor, dynamic=False)
    (run / "training_config.json").write_text(json.dumps({"config": {"teacher": "tiny.en"}}))
    evaluation = {
        "wer": 0.1,
        "rtf": 0.02,
        "data": "/home/me/corpora/libri/test-clean.jsonl",
        "n_utterances": 5,
    }
    (run / "eval" / "eval.json").write_text(json.dumps(evaluation))
    card = _export(run, tmp_path / "hf", "hf", "--name", "distil-tiny-demo")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert "# distil-tiny-demo" in card and meta["model-index"][0]["name"] == "distil-tiny-demo"
    dataset = meta["model-index"][0]["results"][0]["dataset"]
    assert dataset["name"] == "test-clean" and "/home/me" not in card


def test_the_ggml_cards_snippet_runs_verbatim_and_keeps_the_short_context(tmp_path, tiny_processor):
    """The whisper.cpp card's snippet, run as it is, computes the audio_ctx geodistill's engine uses and
    decodes what it decodes."""
    pytest.importorskip("pywhispercpp")
    from geodistill.decoding.whispercpp import WhisperCppModel

    out = tmp_path / "ggml"
    card = _export(_save(tmp_path / "dyn", tiny_processor, dynamic=True), out, "ggml")
    snippet = card.split("```python\n")[1].split("```")[0]
    assert "MARGIN = 16" in snippet
    wav = tmp_path / "speech.wav"
    t = np.arange(int(16000 * 2.3)) / 16000
    sf.write(wav, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    model_file = next(out.glob("*.bin"))
    code = snippet.replace('"PATH/ggml-model.bin"', json.dumps(str(model_file)))
    code = code.replace('"speech.wav"', json.dumps(str(wav))) + "\nprint(audio_ctx)\n"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-2000:]
    *text, ctx = ran.stdout.strip().splitlines()
    with WhisperCppModel(model_file, threads=1, audio_context="dynamic", margin=16) as engine:
        assert int(ctx) == engine.audio_ctx(t.size) == 115 + 16  # 2.3 s: 230 Mel frames, 115 positions
        assert " ".join(text).strip() == engine.transcribe([sf.read(wav, dtype="float32")[0]])[0]
