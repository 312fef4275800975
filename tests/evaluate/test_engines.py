"""--engine ct2: CTranslate2 decoding behind the HF generate interface, converted once into the cache."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geodistill.cli import main
from geodistill.decoding.engines import load_engine
from geodistill.decoding.whisper import features, generate_ids
from geodistill.evaluate.run import evaluate
from geodistill.evaluate.transcribe import load_model, transcribe_files
from tests.evaluate.test_integration import librivox_rows

pytest.importorskip("ctranslate2")


@pytest.fixture
def gd_cache(tmp_path, monkeypatch):
    path = tmp_path / "gd-cache"
    monkeypatch.setenv("GEODISTILL_CACHE", str(path))
    return path


@pytest.fixture
def feats(tiny_processor):
    rng = np.random.default_rng(0)
    return features(tiny_processor, [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 8000)])


def test_ct2_float32_greedy_matches_hf_token_for_token(tiny_model_dir, feats, gd_cache):
    hf, _, _ = load_model(str(tiny_model_dir), "cpu")
    ct2, processor, dev = load_engine(str(tiny_model_dir), "cpu", "ct2", compute_type="float32")
    assert dev.type == "cpu" and ct2.config.vocab_size == hf.config.vocab_size
    want = generate_ids(hf, feats, max_new_tokens=8)
    got = generate_ids(ct2, feats, max_new_tokens=8)
    assert got.shape == want.shape and got.tolist() == want.tolist()


def test_conversion_is_cached_and_reused(tiny_model_dir, gd_cache):
    first, _, _ = load_engine(str(tiny_model_dir), "cpu", "ct2")
    assert first.folder.parent == gd_cache / "ct2" and (first.folder / "model.bin").is_file()
    stamp = (first.folder / "model.bin").stat().st_mtime_ns
    second, _, _ = load_engine(str(tiny_model_dir), "cpu", "ct2")
    assert second.folder == first.folder and (second.folder / "model.bin").stat().st_mtime_ns == stamp
    as_folder, _, _ = load_engine(str(first.folder), "cpu", "ct2")  # a CT2 folder is used as it is
    assert as_folder.folder == first.folder


def test_ct2_engine_exposes_an_exported_dynamic_context_rule(tmp_path, tiny_processor, gd_cache):
    from tests.conftest import make_tiny_whisper

    model = make_tiny_whisper(d_model=32, layers=1)
    model.config.geodistill_audio_context, model.config.geodistill_context_margin = "dynamic", 16
    model.save_pretrained(tmp_path / "dyn")
    tiny_processor.save_pretrained(tmp_path / "dyn")
    ct2, processor, _ = load_engine(str(tmp_path / "dyn"), "cpu", "ct2", compute_type="float32")
    assert ct2.config.geodistill_audio_context == "dynamic" and ct2.config.geodistill_context_margin == 16
    short = features(processor, [np.zeros(16000, np.float32)])[..., :200]  # CT2 takes < 3000 frames
    assert generate_ids(ct2, short, max_new_tokens=3).shape == (1, 3)


def test_evaluate_with_ct2_records_the_engine(tiny_model_dir, clip_manifest, tmp_path, gd_cache):
    manifest, _ = clip_manifest
    r = evaluate(str(tiny_model_dir), str(manifest), out=tmp_path / "ev", device="cpu", engine="ct2")
    saved = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert saved["engine"] == "ct2" and saved["dtype"] == "int8" and "ctranslate2" in saved["device"]
    assert saved["params"] > 0 and saved["disk_mb"] > 0 and r["n_utterances"] == 4


def test_unknown_engine_is_one_line_exit_2(tiny_model_dir, alsa_wav, capsys):
    assert main(["transcribe", str(tiny_model_dir), str(alsa_wav), "--engine", "tensorrt"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--engine" in err and "tensorrt" in err and "onnx" in err


@pytest.mark.integration
def test_ct2_int8_transcribes_real_speech_like_hf(alsa_wav, tmp_path):
    paths = [alsa_wav] + [r["audio_filepath"] for r in librivox_rows(2)]
    hf = transcribe_files("tiny.en", paths, device="cpu")
    ct2 = transcribe_files("tiny.en", paths, device="cpu", engine="ct2")
    assert "dashwood" in ct2[1].lower() and "center" in ct2[0].lower()
    assert ct2[1:] == hf[1:]  # int8 may differ in punctuation on a two-word prompt, not on sentences
