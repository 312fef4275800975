"""--dtype (engine hf, CTC) and --compute-type (engine ct2 / whispercpp): parsing, refusals, eval.json."""

from __future__ import annotations

import json

import pytest
import torch

from geodistill.cli import main
from geodistill.decoding import options as decode_options
from geodistill.decoding.engines import GGML_TYPES, check_compute_type
from geodistill.decoding.options import COMPUTE_TYPES, DecodeOptions, resolve_dtype
from geodistill.errors import GeodistillError
from geodistill.evaluate.run import evaluate


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_auto_is_fp16_on_cuda_and_fp32_on_cpu():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16  # no CUDA needed to decide
    assert resolve_dtype("fp16", torch.device("cpu")) == torch.float16


def test_unknown_dtype_and_compute_type_are_refused_naming_the_flag():
    with pytest.raises(GeodistillError, match=r"--dtype: unknown 'fp8' \(choose auto, fp32, fp16, bf16\)"):
        DecodeOptions(dtype="fp8")
    with pytest.raises(GeodistillError, match=r"--compute-type: unknown 'int4'.*int8_float16"):
        DecodeOptions(compute_type="int4")


def test_bf16_on_a_cpu_without_it_is_one_line(monkeypatch, tiny_model_dir, alsa_wav, capsys):
    monkeypatch.setattr(decode_options, "cpu_has_bf16", lambda: False)
    with pytest.raises(GeodistillError, match="this CPU has no native bf16"):
        resolve_dtype("bf16", torch.device("cpu"))
    args = ["transcribe", str(tiny_model_dir), str(alsa_wav), "--device", "cpu", "--dtype", "bf16"]
    assert main(args) == 2
    assert "--dtype bf16: this CPU has no native bf16" in _one_line(capsys)


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--dtype", "fp8"], "--dtype: unknown 'fp8'"),
        (["--compute-type", "int4"], "--compute-type: unknown 'int4'"),
        (["--compute-type", "int8"], "--compute-type int8: applies to --engine ct2 / whispercpp"),
        (["--engine", "ct2", "--dtype", "fp16"], "--dtype fp16: applies to --engine hf"),
        (["--engine", "onnx", "--compute-type", "int8"], "--engine onnx runs fp32 only"),
    ],
)
def test_bad_dtype_flags_exit_2_with_one_line(flags, said, tiny_model_dir, alsa_wav, capsys):
    assert main(["transcribe", str(tiny_model_dir), str(alsa_wav), "--device", "cpu", *flags]) == 2
    assert said in _one_line(capsys)


def test_evaluate_records_the_dtype_it_ran(monkeypatch, tiny_model_dir, clip_manifest, tmp_path):
    monkeypatch.setattr(decode_options, "cpu_has_bf16", lambda: True)  # torch runs bf16 on any CPU
    manifest, _ = clip_manifest
    evaluate(str(tiny_model_dir), str(manifest), out=tmp_path / "ev", device="cpu", dtype="bf16")
    saved = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert saved["dtype"] == "bfloat16" and saved["dtype_requested"] == "bf16"
    assert saved["compute_type"] is None and saved["n_utterances"] == 4
    plain = evaluate(str(tiny_model_dir), str(manifest), device="cpu")
    assert plain["dtype"] == "float32" and plain["dtype_requested"] == "auto"


def test_every_compute_type_has_a_whisper_cpp_weights_type():
    assert set(GGML_TYPES) == set(COMPUTE_TYPES)
    assert GGML_TYPES["int8_float16"] == "q8_0" and GGML_TYPES["bfloat16"] == "f16"


def test_a_compute_type_the_device_lacks_is_refused_naming_what_it_has(monkeypatch):
    ctranslate2 = pytest.importorskip("ctranslate2")
    monkeypatch.setattr(ctranslate2, "get_supported_compute_types", lambda device: {"int8", "float32"})
    with pytest.raises(
        GeodistillError, match=r"--compute-type float16: .* on cpu \(supported there: float32, int8\)"
    ):
        check_compute_type("float16", "cpu")
    check_compute_type("int8", "cpu")
    check_compute_type("default", "cpu")


def test_evaluate_with_ct2_records_its_compute_type(tiny_model_dir, clip_manifest, tmp_path, monkeypatch):
    pytest.importorskip("ctranslate2")
    monkeypatch.setenv("GEODISTILL_CACHE", str(tmp_path / "gd-cache"))
    manifest, _ = clip_manifest
    r = evaluate(str(tiny_model_dir), str(manifest), device="cpu", engine="ct2", compute_type="int8_float32")
    assert r["compute_type"] == "int8_float32" and r["dtype"] == "int8_float32" and r["engine"] == "ct2"
