"""geodistill export: HF folder + model card, CTranslate2 round trip, refusals, faster-whisper on speech."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from geodistill.cli import main
from geodistill.models.ct2 import ct2_state_dict, read_ct2, whisper_dims
from tests.conftest import make_tiny_whisper

pytest.importorskip("ctranslate2")


def _student():
    """A tiny random Whisper whose biases and norms are random too (Whisper's init zeroes them)."""
    model = make_tiny_whisper(d_model=64, layers=2, heads=1, seed=5)
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_processor) -> Path:
    """A finished run folder: a random tiny student in best/, its training record and an eval.json."""
    run = tmp_path_factory.mktemp("run")
    _student().save_pretrained(run / "best")
    tiny_processor.save_pretrained(run / "best")
    config = {
        "teacher": "tiny.en",
        "student": {"init": "copy", "decoder_layers": 2, "lora": {"r": 4}},
        "loss": {"ce_weight": 1.0, "kl_weight": 0.5, "temperature": 2.0, "hidden_loss": "geodesic"},
        "train": {"max_steps": 6, "batch_size": 2, "grad_accum": 2, "lr": 1e-3},
        "data": {"train": "data/train.jsonl", "val": "data/val.jsonl", "language": None},
    }
    (run / "training_config.json").write_text(json.dumps({"config": config}))
    (run / "eval").mkdir()
    evaluation = {"wer": 0.1234, "rtf": 0.0567, "data": "data/test.jsonl", "n_utterances": 9}
    (run / "eval" / "eval.json").write_text(json.dumps(evaluation))
    return run


def _export(tmp_path: Path, source: Path | str, fmt: str, *extra: str) -> Path:
    out = tmp_path / f"out-{fmt}"
    assert main(["export", str(source), "--format", fmt, "--out", str(out), *extra]) == 0
    return out


def _dequantized(variables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CT2 int8 weights as float32 (q / scale, per output row), their ``_scale`` variables dropped."""
    out = {}
    for name, tensor in variables.items():
        if name.endswith("_scale"):
            continue
        scale = variables.get(f"{name}_scale")
        if tensor.dtype == torch.int8 and scale is not None:
            tensor = tensor.float() / scale.float().reshape(-1, *[1] * (tensor.dim() - 1))
        out[name] = tensor
    return out


def _read_back(folder: Path, dequantize: bool = False) -> dict[str, torch.Tensor]:
    variables, aliases = read_ct2(folder / "model.bin")
    if dequantize:
        variables = _dequantized(variables)
    dims = whisper_dims(variables, aliases, str(folder))
    return ct2_state_dict(variables, aliases, dims, str(folder))


def test_ct2_float32_export_reads_back_exactly(tmp_path, tiny_run):
    out = _export(tmp_path, tiny_run, "ct2", "--quantization", "float32")
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json", "README.md"):
        assert (out / name).is_file(), name
    original = _student().state_dict()
    back = _read_back(out)
    assert set(back) == set(original)
    for name, tensor in back.items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, original[name]), name


def test_ct2_int8_export_is_within_quantisation_error(tmp_path, tiny_run):
    out = _export(tmp_path, tiny_run, "ct2", "--quantization", "int8")
    variables, _ = read_ct2(out / "model.bin")
    assert any(t.dtype == torch.int8 for t in variables.values())  # it really is quantised
    original = _student().state_dict()
    back = _read_back(out, dequantize=True)
    for name, tensor in back.items():
        want = original[name]
        # symmetric per-output-row int8: error <= half a step = max|row| / 254 (plus float rounding)
        rows = tuple(range(1, want.dim()))
        bound = want.abs().amax(dim=rows, keepdim=True) / 254 + 1e-6 if want.dim() > 1 else 1e-6
        assert ((tensor.float() - want).abs() <= bound).all(), name
    assert not torch.equal(back["proj_out.weight"].float(), original["proj_out.weight"])


def test_hf_export_has_a_hub_model_card_and_loads_in_a_plain_pipeline(tmp_path, tiny_run):
    out = _export(tmp_path, tiny_run, "hf")
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()
    assert not (out / "projector.safetensors").exists() and not (out / "geodistill.json").exists()
    card = (out / "README.md").read_text()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "automatic-speech-recognition"
    assert meta["base_model"] == "openai/whisper-tiny.en" and meta["license"] == "mit"
    assert meta["language"] == ["en"]
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"wer": 12.34, "rtf": 0.0567}
    assert "teacher: `tiny.en`" in card and "steps: 6" in card and "data/train.jsonl" in card
    code = (
        "import sys, json, numpy as np\n"
        "from transformers import pipeline\n"
        f"asr = pipeline('automatic-speech-recognition', model={str(out)!r}, device='cpu')\n"
        "r = asr(np.zeros(16000, dtype=np.float32), generate_kwargs={'max_new_tokens': 5})\n"
        "seen = any(m.startswith('geodistill') for m in sys.modules)\n"
        "print(json.dumps({'text': r['text'], 'geodistill': seen}))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert isinstance(result["text"], str) and result["geodistill"] is False


def test_ct2_model_card_names_ctranslate2(tmp_path, tiny_run):
    out = _export(tmp_path, tiny_run / "best", "ct2", "--quantization", "int8")
    assert not (out / "geodistill_context.json").exists()  # a full-context student records no rule
    meta = yaml.safe_load((out / "README.md").read_text().split("---\n")[1])
    assert meta["library_name"] == "ctranslate2" and "faster-whisper" in meta["tags"]
    assert "model-index" not in meta  # a bare model folder has no run, hence no evaluation to quote


def test_dynamic_context_rule_is_kept_next_to_the_ct2_model(tmp_path, tiny_processor):
    model = make_tiny_whisper(d_model=32, layers=1)
    model.config.geodistill_audio_context, model.config.geodistill_context_margin = "dynamic", 32
    model.save_pretrained(tmp_path / "dyn")
    tiny_processor.save_pretrained(tmp_path / "dyn")
    out = _export(tmp_path, tmp_path / "dyn", "ct2")
    rule = json.loads((out / "geodistill_context.json").read_text())
    assert rule == {"geodistill_audio_context": "dynamic", "geodistill_context_margin": 32}


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--format", "tflite"], ["--format", "tflite"]),
        (["--format", "ct2", "--quantization", "int4"], ["--quantization", "int4"]),
        (["--format", "hf", "--quantization", "int8"], ["--quantization", "ct2"]),
    ],
)
def test_bad_choices_are_one_line_exit_2(tmp_path, tiny_run, capsys, args, words):
    assert main(["export", str(tiny_run), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words)
    assert not (tmp_path / "o").exists()


def test_run_without_finished_student_is_refused(tmp_path, capsys):
    run = tmp_path / "unfinished"
    run.mkdir()
    (run / "training_config.json").write_text("{}")
    (run / "best").mkdir()  # a crash left an empty best/
    assert main(["export", str(run), "--format", "hf", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no finished student" in err and str(run) in err


@pytest.mark.integration
def test_faster_whisper_transcribes_real_speech_with_an_exported_tiny_en(tmp_path, alsa_wav):
    faster_whisper = pytest.importorskip("faster_whisper")
    out = _export(tmp_path, "tiny.en", "ct2", "--quantization", "int8")
    model = faster_whisper.WhisperModel(str(out), device="cpu", compute_type="int8", cpu_threads=1)
    segments, info = model.transcribe(str(alsa_wav), beam_size=1, language="en")
    text = " ".join(s.text for s in segments).lower()
    assert "front" in text and "center" in text and np.isfinite(info.duration)
