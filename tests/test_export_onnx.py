"""ONNX: ``export --format onnx`` (encoder over any frame count, decoder with a KV cache) and
``--engine onnx`` (ONNX Runtime behind the HF generate slice) against the HF engine, token for token."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from geodistill.cli import main
from geodistill.decoding import fallback
from geodistill.decoding.engines import load_engine
from geodistill.decoding.whisper import _hf_attempt, features, generate_ids
from geodistill.errors import GeodistillError, ModelLoadError
from geodistill.evaluate.run import evaluate
from geodistill.export import export
from geodistill.models import load_whisper
from geodistill.models.context import encode
from geodistill.models.onnx import write_onnx
from tests.conftest import make_tiny_whisper
from tests.evaluate.clips import write_clips, write_manifest
from tests.students.ctc_runs import random_ctc_dir  # noqa: F401  (fixture)

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(autouse=True)
def gd_cache(tmp_path, monkeypatch):
    path = tmp_path / "gd-cache"
    monkeypatch.setenv("GEODISTILL_CACHE", str(path))
    return path


def _save(folder: Path, processor, context: tuple[str, int] | None = None, **shape) -> Path:
    model = make_tiny_whisper(**{"d_model": 32, "layers": 2, "seed": 3, **shape})
    with torch.no_grad():  # Whisper's init zeroes biases, norms are ones: randomise them (every term counts)
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.add_(0.1 * torch.randn(p.shape))
    if context is not None:
        model.config.geodistill_audio_context, model.config.geodistill_context_margin = context
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, tiny_processor) -> Path:
    return _save(tmp_path_factory.mktemp("tiny") / "hf", tiny_processor)


@pytest.fixture(scope="module")
def dyn_dir(tmp_path_factory, tiny_processor) -> Path:
    """A dynamic-context student: the clip + 16 encoder positions."""
    return _save(tmp_path_factory.mktemp("dyn") / "hf", tiny_processor, ("dynamic", 16), layers=1)


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, tiny_dir) -> Path:
    """``export --format onnx`` of the tiny model (the folder ``--engine onnx`` then uses as it is)."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    assert main(["export", str(tiny_dir), "--format", "onnx", "--out", str(out)]) == 0
    return out


@pytest.fixture
def manifest(tmp_path) -> Path:
    return write_manifest(tmp_path, write_clips(tmp_path, 3))


def _session(path: Path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_the_encoder_takes_any_even_frame_count_and_matches_hf(tmp_path, tiny_dir):
    from transformers import WhisperForConditionalGeneration

    hf = WhisperForConditionalGeneration.from_pretrained(tiny_dir).eval()
    write_onnx(tiny_dir, tmp_path)
    session = _session(tmp_path / "encoder.onnx")
    for frames in (3000, 400):
        feats = torch.randn(2, 80, frames, generator=torch.Generator().manual_seed(frames))
        with torch.no_grad():
            want = encode(hf.get_encoder(), feats).last_hidden_state.numpy()
        got = session.run(None, {"input_features": feats.numpy()})[0]
        assert got.shape == (2, frames // 2, 32)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_the_decoder_graphs_with_the_kv_cache_match_hf_logits(tiny_dir, onnx_dir):
    from transformers import WhisperForConditionalGeneration

    hf = WhisperForConditionalGeneration.from_pretrained(tiny_dir).eval()
    hidden = torch.randn(2, 150, 32)
    ids = torch.tensor([[50257, 50362, 400, 1000, 2000]] * 2)
    with torch.no_grad():
        want = hf(encoder_outputs=(hidden,), decoder_input_ids=ids).logits.numpy()
    first = _session(onnx_dir / "decoder.onnx").run(
        None, {"input_ids": ids[:, :2].numpy(), "encoder_hidden_states": hidden.numpy()}
    )
    step = _session(onnx_dir / "decoder_with_past.onnx")
    names = [i.name for i in step.get_inputs()][1:]
    logits, self_kv, cross_kv = [first[0]], first[1:5], first[5:]  # 2 layers: 4 self, 4 cross tensors
    for t in range(2, 5):
        kv = dict(zip(names, self_kv + cross_kv, strict=True))
        out = step.run(None, {"input_ids": ids[:, t : t + 1].numpy(), **kv})
        logits.append(out[0])
        self_kv = out[1:]
    assert self_kv[0].shape == (2, 2, 5, 16)  # the self-attention cache grew to every token
    np.testing.assert_allclose(np.concatenate(logits, axis=1), want, atol=1e-4, rtol=0)


def test_the_export_folder_and_its_card(onnx_dir):
    names = {p.name for p in onnx_dir.iterdir()}
    assert {"encoder.onnx", "decoder.onnx", "decoder_with_past.onnx", "config.json"} <= names
    assert {"generation_config.json", "tokenizer.json", "preprocessor_config.json", "README.md"} <= names
    assert "geodistill_context.json" not in names  # full context: no rule to keep
    card = (onnx_dir / "README.md").read_text()
    assert "library_name: onnx" in card and "any even frame count up to 3000" in card
    assert "past_key_values.{i}.decoder.key" in card and "present.{i}.encoder.key" in card
    assert not list(onnx_dir.parent.glob(".*"))  # the temp folder was renamed into place


def test_onnx_engine_uses_an_export_as_it_is_and_generates_like_hf(
    tiny_processor, tiny_dir, onnx_dir, gd_cache
):
    hf, _, _ = load_engine(str(tiny_dir), "cpu", "hf")
    model, processor, device = load_engine(str(onnx_dir), "cpu", "onnx")
    assert model.folder == onnx_dir and device.type == "cpu" and not (gd_cache / "onnx").exists()
    rng = np.random.default_rng(0)
    feats = features(tiny_processor, [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 8000)])
    want = generate_ids(hf, feats, max_new_tokens=12)
    got = generate_ids(model, feats, max_new_tokens=12)
    assert got.shape == want.shape and got.tolist() == want.tolist()


def test_a_multilingual_model_detects_or_takes_the_language_like_hf(tmp_path, tiny_processor):
    model = make_tiny_whisper(d_model=32, layers=1, seed=1)
    tok = tiny_processor.tokenizer
    gen = model.generation_config
    gen.is_multilingual = True
    gen.lang_to_id = {t: tok.convert_tokens_to_ids(t) for t in ("<|en|>", "<|de|>", "<|fr|>", "<|es|>")}
    gen.task_to_id = {t: tok.convert_tokens_to_ids(f"<|{t}|>") for t in ("transcribe", "translate")}
    model.save_pretrained(tmp_path / "multi")
    tiny_processor.save_pretrained(tmp_path / "multi")
    onnx, _, _ = load_engine(str(tmp_path / "multi"), "cpu", "onnx")
    rng = np.random.default_rng(1)
    feats = features(tiny_processor, [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 8000)])
    for language in (None, "german"):  # None: detected per clip from the first decoder step
        want = generate_ids(model, feats, language=language, max_new_tokens=6)
        assert generate_ids(onnx, feats, language=language, max_new_tokens=6).tolist() == want.tolist()
    with pytest.raises(GeodistillError, match="--language klingon"):
        generate_ids(onnx, feats, language="klingon", max_new_tokens=6)


def _hypotheses(out: Path) -> list[str]:
    return [json.loads(x)["hypothesis"] for x in (out / "utterances.jsonl").read_text().splitlines()]


def test_evaluate_with_onnx_transcribes_like_hf(tiny_dir, manifest, tmp_path, gd_cache):
    kw = {"device": "cpu", "max_new_tokens": 10, "batch_size": 2}
    hf = evaluate(str(tiny_dir), str(manifest), out=tmp_path / "hf", **kw)
    ox = evaluate(str(tiny_dir), str(manifest), out=tmp_path / "onnx", engine="onnx", **kw)
    assert _hypotheses(tmp_path / "onnx") == _hypotheses(tmp_path / "hf") and ox["wer"] == hf["wer"]
    assert ox["engine"] == "onnx" and ox["device"] == "cpu (onnxruntime)" and ox["dtype"] == "float32"
    assert ox["params"] == hf["params"] and ox["disk_mb"] > 0
    assert [p.parent.name for p in gd_cache.glob("onnx/*/encoder.onnx")] != []  # converted once, cached


def test_a_dynamic_context_student_keeps_its_short_input(dyn_dir, manifest, tmp_path, monkeypatch):
    from geodistill.decoding.onnx import OnnxWhisper

    seen: list[int] = []
    generate = OnnxWhisper.generate
    monkeypatch.setattr(
        OnnxWhisper, "generate", lambda self, x, **kw: seen.append(x.shape[-1]) or generate(self, x, **kw)
    )
    kw = {"device": "cpu", "max_new_tokens": 10, "batch_size": 2}
    hf = evaluate(str(dyn_dir), str(manifest), out=tmp_path / "hf", **kw)
    ox = evaluate(str(dyn_dir), str(manifest), out=tmp_path / "onnx", engine="onnx", **kw)
    assert _hypotheses(tmp_path / "onnx") == _hypotheses(tmp_path / "hf")
    assert ox["audio_context"] == hf["audio_context"] == "dynamic" and ox["context_margin"] == 16
    assert seen and max(seen) < 3000  # clips of 1.2-1.6 s: 2 * (ceil(frames / 2) + 16) frames


def test_export_of_a_dynamic_student_keeps_its_rule(dyn_dir, tmp_path):
    out = export(dyn_dir, "onnx", tmp_path / "dyn-onnx")
    rule = json.loads((out / "geodistill_context.json").read_text())
    assert rule == {"geodistill_audio_context": "dynamic", "geodistill_context_margin": 16}
    card = (out / "README.md").read_text()
    assert "frames = min(3000, 2 * (ceil(ceil(n_samples / 160) / 2) + 16))" in card
    model, _, _ = load_engine(str(out), "cpu", "onnx")
    assert model.config.geodistill_audio_context == "dynamic" and model.config.geodistill_context_margin == 16


def test_export_of_a_ctc_student_is_refused_in_one_line(random_ctc_dir, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "onnx"
    assert main(["export", str(random_ctc_dir), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--format onnx" in err and "use --format hf" in err and not out.exists()


def test_a_corrupt_graph_is_a_one_line_model_load_error(onnx_dir, tmp_path, alsa_wav, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(onnx_dir, broken)
    (broken / "encoder.onnx").write_bytes(b"\x08\x07not a protobuf at all" * 50)
    with pytest.raises(ModelLoadError, match=r"encoder\.onnx: not a loadable ONNX graph") as err:
        load_engine(str(broken), "cpu", "onnx")
    assert "\n" not in str(err.value)
    assert main(["transcribe", str(broken), str(alsa_wav), "--engine", "onnx"]) == 2
    out = capsys.readouterr().err
    assert out.count("\n") == 1 and "encoder.onnx" in out


def test_beam_search_is_refused_in_one_line(onnx_dir, manifest, tmp_path, capsys):
    args = ["evaluate", "--model", str(onnx_dir), "--data", str(manifest), "--engine", "onnx"]
    assert main([*args, "--beam-size", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--beam-size 2" in err and "greedily" in err


def test_the_temperature_fallback_runs_in_onnx_runtime_like_hf(tiny_processor, tiny_dir, onnx_dir):
    """Both engines measure a greedy attempt's mean log-probability alike; ONNX Runtime's retries sample
    (seeded: the same result every call) and replace a greedy loop."""
    hf = load_whisper(str(tiny_dir), device="cpu")[0].eval()
    model, _, _ = load_engine(str(onnx_dir), "cpu", "onnx")
    noise = 0.1 * np.random.default_rng(1).standard_normal(16000).astype(np.float32)
    feats = features(tiny_processor, [noise])
    greedy = generate_ids(model, feats, max_new_tokens=12)
    means: list[float] = []
    model.generate(feats, max_new_tokens=12, logprobs=means)
    greedy_kwargs = {"num_beams": 1, "do_sample": False, "use_cache": True, "max_new_tokens": 12}
    _, hf_means = _hf_attempt(hf, hf.get_encoder()(feats), greedy_kwargs, 0.0, 50256)
    assert means == pytest.approx(hf_means, abs=1e-3)
    picked = generate_ids(model, feats, max_new_tokens=12, fallback=True)
    assert picked.tolist() == generate_ids(model, feats, max_new_tokens=12, fallback=True).tolist()
    retried = fallback.needs_retry(fallback.text_tokens(greedy[0], 50256), means[0], None, 51864)
    assert retried and picked.tolist() != greedy.tolist()


def test_transcribe_runs_greedy_and_refuses_audio_over_30_s(onnx_dir, tmp_path, capsys):
    import soundfile as sf

    sf.write(tmp_path / "short.wav", np.zeros(16000, np.float32), 16000)
    assert main(["transcribe", str(onnx_dir), str(tmp_path / "short.wav"), "--engine", "onnx"]) == 0
    sf.write(tmp_path / "long.wav", np.zeros(31 * 16000, np.float32), 16000)
    assert main(["transcribe", str(onnx_dir), str(tmp_path / "long.wav"), "--engine", "onnx"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "long.wav" in err and "30 s" in err


@pytest.mark.parametrize("engine", ["hf", "ct2"])
def test_an_onnx_export_under_another_engine_is_one_line(onnx_dir, alsa_wav, capsys, engine):
    if engine == "ct2":
        pytest.importorskip("ctranslate2")
    assert main(["transcribe", str(onnx_dir), str(alsa_wav), "--engine", engine]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an ONNX export" in err and "--engine onnx" in err


def test_missing_onnxruntime_is_one_line_naming_the_extra(onnx_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(GeodistillError, match=r"^--engine onnx needs the 'onnxruntime' package: .*\[onnx\]"):
        load_engine(str(onnx_dir), "cpu", "onnx")


@pytest.mark.integration
def test_tiny_en_wer_with_onnx_is_within_half_a_point_of_hf(tmp_path, alsa_wav):
    from tests.evaluate.test_integration import librivox_rows

    rows = librivox_rows(3) + [{"audio_filepath": str(alsa_wav), "text": "Front center", "speaker": "alsa"}]
    manifest = write_manifest(tmp_path, rows, "real.jsonl")
    hf = evaluate("tiny.en", str(manifest), out=tmp_path / "hf", device="cpu", batch_size=4)
    ox = evaluate("tiny.en", str(manifest), out=tmp_path / "onnx", device="cpu", batch_size=4, engine="onnx")
    assert ox["n_utterances"] == hf["n_utterances"] == 4 and ox["engine"] == "onnx"
    assert abs(ox["wer"] - hf["wer"]) <= 0.005 and ox["wer"] < 0.35
    assert "dashwood" in _hypotheses(tmp_path / "onnx")[0].lower()
