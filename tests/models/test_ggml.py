"""whisper.cpp model files: tensor round trip (f32 exact, f16 rounding, q8_0 within its bound), the
loader's layout rules, damaged files, the pywhispercpp engine (full and dynamic audio context), and the
real tiny.en exported and transcribing real speech (integration)."""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from geodistill.errors import GeodistillError, ModelLoadError
from geodistill.models.ggml import (
    Q8_BLOCK,
    context_rule,
    dequantize_q8_0,
    ggml_name,
    quantize_q8_0,
    storage_type,
    write_ggml,
)
from geodistill.models.ggml_read import check_loadable, read_ggml
from geodistill.optional import MissingDependencyError
from tests.conftest import make_tiny_whisper

D_MODEL = 64  # a multiple of 32, so q8_0 applies; MLPs 4 x wide as whisper.cpp assumes


def _whisper_for_cpp(d_model: int = D_MODEL, seed: int = 1):
    """A random tiny Whisper shaped as whisper.cpp expects (MLP 4 x d_model), real tiny.en vocabulary size."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        vocab_size=51864,
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=4 * d_model,
        decoder_ffn_dim=4 * d_model,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        bos_token_id=50256,
    )
    torch.manual_seed(seed)
    return WhisperForConditionalGeneration(cfg).eval()


@pytest.fixture(scope="module")
def hf_model():
    return _whisper_for_cpp()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, hf_model, tiny_processor) -> Path:
    folder = tmp_path_factory.mktemp("hf-for-cpp")
    hf_model.save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ggml_files(tmp_path_factory, hf_dir) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("ggml")
    return {dtype: write_ggml(hf_dir, out / f"model-{dtype}.bin", dtype) for dtype in ("f32", "f16", "q8_0")}


def _hf_weights(model) -> dict[str, np.ndarray]:
    """HF state dict as float32 numpy, keyed by whisper.cpp's names (conv biases (n, 1) as stored)."""
    out = {}
    for key, tensor in model.state_dict().items():
        name = ggml_name(key)
        if name is not None:
            values = tensor.float().numpy()
            out[name] = values.reshape(-1, 1) if name.endswith(("conv1.bias", "conv2.bias")) else values
    return out


def q8_0_bound(values: np.ndarray) -> np.ndarray:
    """Largest |x - dequant(quant(x))| for each value's block of 32.

    d = max|x| / 127; q = round(x / d), so |x - d q| <= d / 2. The stored scale D = fp16(d) is off by at most
    half an fp16 ulp, 2^-11 d (normal range) or 2^-25 (subnormal), times |q| <= 127. Bound: d / 2 +
    127 max(2^-11 d, 2^-25), plus float32 slack.
    """
    blocks = values.astype(np.float32).reshape(-1, Q8_BLOCK)
    d = np.abs(blocks).max(axis=1).astype(np.float64) / 127
    bound = d / 2 + 127 * np.maximum(d * 2.0**-11, 2.0**-25)
    return np.repeat(bound * (1 + 1e-5) + 1e-12, Q8_BLOCK).reshape(values.shape)


# ------------------------------------------------------------------------------- writing and reading


def test_names_map_from_hf_to_whisper_cpp():
    assert ggml_name("model.encoder.layers.3.self_attn.q_proj.weight") == "encoder.blocks.3.attn.query.weight"
    assert (
        ggml_name("model.decoder.layers.0.encoder_attn.k_proj.weight")
        == "decoder.blocks.0.cross_attn.key.weight"
    )
    assert ggml_name("model.decoder.layers.1.fc2.bias") == "decoder.blocks.1.mlp.2.bias"
    assert ggml_name("model.encoder.layer_norm.weight") == "encoder.ln_post.weight"
    assert ggml_name("model.decoder.embed_tokens.weight") == "decoder.token_embedding.weight"
    assert ggml_name("model.encoder.embed_positions.weight") == "encoder.positional_embedding"
    assert ggml_name("proj_out.weight") is None and ggml_name("model.encoder.extra.weight") is None


def test_header_vocabulary_and_mel_filters(ggml_files, hf_model, tiny_processor):
    model = read_ggml(ggml_files["f16"], load_tensors=False)
    assert model.hparams == {
        "n_vocab": 51864,
        "n_audio_ctx": 1500,
        "n_audio_state": D_MODEL,
        "n_audio_head": 2,
        "n_audio_layer": 1,
        "n_text_ctx": 448,
        "n_text_state": D_MODEL,
        "n_text_head": 2,
        "n_text_layer": 2,
        "n_mels": 80,
        "ftype": 1,
    }
    assert read_ggml(ggml_files["q8_0"], load_tensors=False).hparams["ftype"] == 2007  # 7 + 1000 x qnt v2
    tok = tiny_processor.tokenizer
    assert len(model.vocab) == tok.convert_tokens_to_ids("<|endoftext|>") == 50256  # regular tokens only
    for i in (0, 220, 1000, 13, 50255):  # raw bytes of each token, as the tokenizer decodes it
        assert model.vocab[i].decode("utf-8") == tok.decode([i])
    want = np.asarray(tiny_processor.feature_extractor.mel_filters, dtype=np.float32).T
    assert model.mel_filters.shape == (80, 201) and np.array_equal(model.mel_filters, want)
    check_loadable(model)


def test_f32_round_trip_is_exact(ggml_files, hf_model):
    got, want = read_ggml(ggml_files["f32"]).tensors, _hf_weights(hf_model)
    assert got.keys() == want.keys() and len(got) == 7 + 15 * 1 + 4 + 24 * 2  # whisper.cpp's tensor count
    for name, values in want.items():
        assert got[name].dtype == np.float32 and np.array_equal(got[name], values), name


def test_f16_round_trip_is_fp16_rounding(ggml_files, hf_model):
    model, want = read_ggml(ggml_files["f16"]), _hf_weights(hf_model)
    for name, values in want.items():
        stored = model.types[name]
        assert stored == storage_type(name, values.ndim, "f16"), name
        expected = values if stored == "f32" else values.astype(np.float16).astype(np.float32)
        assert np.array_equal(model.tensors[name], expected), name
        np.testing.assert_allclose(model.tensors[name], values, rtol=2.0**-11, atol=2.0**-25, err_msg=name)
    # whisper.cpp's storage rule: conv kernels f16; biases, norms, conv biases, positions f32
    assert model.types["encoder.conv1.weight"] == "f16" and model.types["encoder.conv2.bias"] == "f32"
    assert model.shapes["encoder.conv1.bias"] == (D_MODEL, 1)
    assert model.types["decoder.positional_embedding"] == "f32"
    assert model.types["decoder.token_embedding.weight"] == "f16"


def test_q8_0_round_trip_is_within_its_bound(ggml_files, hf_model):
    model, want = read_ggml(ggml_files["q8_0"]), _hf_weights(hf_model)
    quantised = [n for n, t in model.types.items() if t == "q8_0"]
    assert len(quantised) == 1 + 6 * 1 + 10 * 2  # token embedding + every 2-D matrix of every block
    assert (
        model.types["encoder.conv2.weight"] == "f16" and model.types["encoder.positional_embedding"] == "f32"
    )
    for name in quantised:
        values = want[name]
        err = np.abs(model.tensors[name].astype(np.float64) - values)
        assert (err <= q8_0_bound(values)).all(), name
        assert err.max() > 0, name  # really quantised
    size = {d: p.stat().st_size for d, p in ggml_files.items()}
    assert size["q8_0"] < 0.6 * size["f16"] and size["f16"] < 0.55 * size["f32"]


def test_q8_0_blocks_follow_ggml():
    x = np.zeros(4 * Q8_BLOCK, np.float32)
    x[:32] = np.linspace(-1.0, 2.0, 32)  # max |x| 2 -> d = 2/127
    x[32:64] = 0  # an all-zero block: d = 0, q = 0
    x[64] = 127 * 0.5 / 127 * 1.5  # 0.75 with d = 1/127 (block max 1): x/d = 95.25
    x[65], x[66] = 1.0, -0.5 / 127  # -0.5/127 / (1/127) = -0.5: a tie, rounds away from zero as C's roundf
    x[96:] = 1e-6  # scale in fp16's subnormal range
    blocks = quantize_q8_0(x)
    assert blocks.dtype.itemsize == 34 and len(blocks) == 4
    assert blocks["d"][1] == 0 and (blocks["qs"][1] == 0).all()
    assert blocks["qs"][2][0] == 95 and blocks["qs"][2][1] == 127 and blocks["qs"][2][2] == -1
    assert np.abs(blocks["qs"]).max() == 127
    assert (np.abs(dequantize_q8_0(blocks) - x) <= q8_0_bound(x)).all()


def test_write_is_atomic_and_replaces(tmp_path, hf_dir):
    out = tmp_path / "sub" / "model.bin"
    out.parent.mkdir()
    out.write_bytes(b"old")
    assert write_ggml(hf_dir, out, "q8_0") == out
    assert read_ggml(out, load_tensors=False).dtype == "q8_0"
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.bin"]  # no temporary left behind
    assert out.stat().st_mode & 0o777 != 0o600


def test_models_whisper_cpp_cannot_hold_are_refused_naming_the_folder(tmp_path, hf_dir, tiny_processor):
    out = tmp_path / "out.bin"
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeodistillError, match=r"from .*empty: no config\.json"):
        write_ggml(tmp_path / "empty", out)
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(GeodistillError, match=r"bert: config\.json is for model_type 'bert', not 'whisper'$"):
        write_ggml(bert, out)
    narrow = tmp_path / "narrow-mlp"
    make_tiny_whisper(d_model=32, layers=1).save_pretrained(narrow)  # MLP 2 x d_model
    tiny_processor.save_pretrained(narrow)
    with pytest.raises(GeodistillError, match=r"narrow-mlp: MLP widths \(64, 64\) are not 4 x d_model"):
        write_ggml(narrow, out)
    odd = tmp_path / "d48"
    _whisper_for_cpp(d_model=48).save_pretrained(odd)
    tiny_processor.save_pretrained(odd)
    with pytest.raises(GeodistillError, match=r"d48: q8_0 needs d_model a multiple of 32 \(got 48\)"):
        write_ggml(odd, out, "q8_0")
    with pytest.raises(GeodistillError, match="must be one of f16, f32, q8_0"):
        write_ggml(hf_dir, out, "q4_0")
    assert not out.exists() and list(tmp_path.glob(".out.bin*")) == []


def test_a_shape_error_half_way_through_leaves_no_file(tmp_path, hf_dir):
    short = tmp_path / "short-text-ctx"
    short.mkdir()
    for f in hf_dir.iterdir():
        (short / f.name).symlink_to(f)
    (short / "config.json").unlink()
    config = json.loads((hf_dir / "config.json").read_text())
    (short / "config.json").write_text(json.dumps({**config, "max_target_positions": 400}))
    out = tmp_path / "out.bin"
    with pytest.raises(
        GeodistillError, match=r"decoder\.embed_positions\.weight has shape \(448, 64\), expected"
    ):
        write_ggml(short, out)  # the encoder's tensors are already written by then
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short-text-ctx"]


def test_context_rule(tmp_path, hf_dir):
    assert context_rule(hf_dir) == {}
    student = tmp_path / "student"
    student.mkdir()
    config = json.loads((hf_dir / "config.json").read_text())
    config.update(geodistill_audio_context="dynamic", geodistill_context_margin=32)
    (student / "config.json").write_text(json.dumps(config))
    assert context_rule(student) == {"geodistill_audio_context": "dynamic", "geodistill_context_margin": 32}


# ------------------------------------------------------------------------------------- damaged files


def _damaged(tmp_path: Path, source: Path, name: str, edit) -> Path:
    data = bytearray(source.read_bytes())
    path = tmp_path / name
    path.write_bytes(edit(data))
    return path


def _first_tensor_offset(path: Path) -> int:
    model = read_ggml(path, load_tensors=False)
    return 4 + 4 * 11 + 8 + 4 * model.mel_filters.size + 4 + sum(4 + len(t) for t in model.vocab)


def test_damaged_files_are_one_line_errors_naming_the_file(tmp_path, ggml_files):
    src = ggml_files["q8_0"]
    first = _first_tensor_offset(src)

    def unknown_type(b: bytearray) -> bytearray:
        b[first + 8 : first + 12] = struct.pack("<i", 99)  # the first tensor's ttype
        return b

    cases = {
        "truncated.bin": (lambda b: b[:-1000], r"truncated: tensor 'decoder\.blocks\.1\..*' needs \d+ bytes"),
        "bad-magic.bin": (lambda b: b"GGUF" + b[4:], r"bad magic 0x46554747, expected 0x67676d6c 'ggml'"),
        "empty.bin": (lambda b: b"", r"truncated: the magic number needs 4 bytes at offset 0, 0 left"),
        "cut-vocab.bin": (lambda b: b[:70000], r"truncated: token \d+"),
        "unknown-type.bin": (unknown_type, r"tensor 'encoder\.positional_embedding' has unknown type 99"),
    }
    for name, (edit, pattern) in cases.items():
        path = _damaged(tmp_path, src, name, edit)
        for load in (True, False):
            with pytest.raises(ModelLoadError, match=pattern) as info:
                read_ggml(path, load_tensors=load)
            message = str(info.value)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
    with pytest.raises(ModelLoadError, match=r"missing\.bin: cannot read"):
        read_ggml(tmp_path / "missing.bin")


def test_layout_check_catches_what_whisper_cpp_would_refuse(tmp_path, ggml_files):
    src = ggml_files["f16"]
    renamed = _damaged(
        tmp_path, src, "renamed.bin", lambda b: b.replace(b"encoder.conv1.weight", b"encoder.convX.weight")
    )
    with pytest.raises(
        ModelLoadError, match=r"renamed\.bin: not a model whisper\.cpp can load \(unknown tensor"
    ):
        check_loadable(read_ggml(renamed, load_tensors=False))


# ------------------------------------------------------------------------------------------ engine


def test_missing_pywhispercpp_names_the_extra(monkeypatch, ggml_files):
    from geodistill.decoding.whispercpp import WhisperCppModel

    monkeypatch.setitem(sys.modules, "pywhispercpp", None)
    monkeypatch.setitem(sys.modules, "pywhispercpp.model", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'geodistill\[whispercpp\]'$"):
        WhisperCppModel(ggml_files["f16"], threads=1)


def test_engine_refuses_bad_files_and_options_before_whisper_cpp_sees_them(tmp_path, ggml_files):
    from geodistill.decoding.whispercpp import WhisperCppModel

    with pytest.raises(ModelLoadError, match=r"model-f32\.bin: an f32 whisper\.cpp file.*#2557"):
        WhisperCppModel(ggml_files["f32"], threads=1)  # whisper.cpp would abort the process
    cut = _damaged(tmp_path, ggml_files["f16"], "cut.bin", lambda b: b[:-10])
    with pytest.raises(ModelLoadError, match=r"cut\.bin: .*truncated"):
        WhisperCppModel(cut, threads=1)
    with pytest.raises(ModelLoadError, match=r"nothing\.bin: no such whisper\.cpp model file"):
        WhisperCppModel(tmp_path / "nothing.bin", threads=1)
    with pytest.raises(GeodistillError, match="audio_context: must be one of"):
        WhisperCppModel(ggml_files["f16"], threads=1, audio_context="half")
    with pytest.raises(GeodistillError, match="threads: must be an integer >= 1"):
        WhisperCppModel(ggml_files["f16"], threads=0)


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_whisper_cpp_loads_the_written_files(ggml_files, dtype):
    pytest.importorskip("pywhispercpp")
    from geodistill.decoding.whispercpp import WhisperCppModel

    with WhisperCppModel(ggml_files[dtype], threads=1, audio_context="dynamic", margin=64) as engine:
        assert engine.n_audio_ctx == 1500
        assert engine.audio_ctx(16000) == 50 + 64  # 100 Mel frames -> 50 positions
        assert engine.audio_ctx(22848) == 72 + 64  # ceil(142.8) = 143 frames -> 72 positions
        assert engine.audio_ctx(30 * 16000) == 1500  # capped at the model's context
        assert not engine._flash  # flash attention pads the cross-attention, unmasked (module doc)
        engine.use_context("full", 64)
        assert engine._flash and engine.audio_ctx(16000) == 0
    assert engine._model is None


# ------------------------------------------------------------------------------ real model and speech


@pytest.fixture(scope="module")
def tiny_en_files_cpp(tmp_path_factory, tiny_en_source) -> tuple[Path, dict[str, Path]]:
    from geodistill.models.loading import converted_dir

    hf = converted_dir(tiny_en_source)
    out = tmp_path_factory.mktemp("tiny-en-ggml")
    return hf, {dtype: write_ggml(hf, out / f"tiny.en-{dtype}.bin", dtype) for dtype in ("f16", "q8_0")}


@pytest.fixture(scope="module")
def real_speech(alsa_wav) -> tuple[list[str], list[np.ndarray], list[str]]:
    from geodistill.data.audio import load_audio
    from tests.evaluate.test_integration import librivox_rows

    rows = librivox_rows(2) + [{"audio_filepath": str(alsa_wav), "text": "front center"}]
    paths = [r["audio_filepath"] for r in rows]
    return paths, [load_audio(p) for p in paths], [r["text"] for r in rows]


@pytest.mark.integration
def test_real_tiny_en_f16_file_holds_its_weights(tiny_en_files_cpp):
    from safetensors.numpy import load_file

    hf, files = tiny_en_files_cpp
    model = read_ggml(files["f16"])
    check_loadable(model)
    weights = load_file(str(hf / "model.safetensors"))  # tiny.en is stored in fp16: f16 is lossless
    for key, values in weights.items():
        name = ggml_name(key)
        if name is not None:
            assert np.array_equal(model.tensors[name].reshape(values.shape), values.astype(np.float32)), name


@pytest.mark.integration
def test_real_tiny_en_transcribes_real_speech_like_the_hf_model(tiny_en_files_cpp, real_speech):
    pytest.importorskip("pywhispercpp")
    from geodistill.decoding.wer import wer_scores
    from geodistill.decoding.whispercpp import WhisperCppModel
    from geodistill.evaluate.transcribe import transcribe_files

    hf, files = tiny_en_files_cpp
    paths, audios, refs = real_speech
    hf_texts = transcribe_files(str(hf), paths, device="cpu", language="en")
    for dtype in ("f16", "q8_0"):
        with WhisperCppModel(files[dtype], threads=2) as engine:
            texts = engine.transcribe(audios)
        assert "dashwood" in texts[0].lower() and "center" in texts[2].lower(), texts
        assert wer_scores(hf_texts, texts)["wer"] <= 0.1, (dtype, texts, hf_texts)
        assert wer_scores(refs, texts)["wer"] <= 0.2, (dtype, texts)


@pytest.mark.integration
def test_dynamic_context_sets_a_short_audio_ctx_and_still_transcribes(tiny_en_files_cpp, real_speech):
    pytest.importorskip("pywhispercpp")
    from geodistill.decoding.wer import wer_scores
    from geodistill.decoding.whispercpp import WhisperCppModel

    _, files = tiny_en_files_cpp
    _, audios, refs = real_speech
    clip, ref = audios[0], refs[0]  # 7.1 s of LibriVox
    with WhisperCppModel(files["f16"], threads=2, audio_context="dynamic", margin=64) as engine:
        seen = []
        real = engine._model.transcribe
        engine._model.transcribe = lambda audio, **params: seen.append(params) or real(audio, **params)
        (text,) = engine.transcribe([clip])
    positions = math.ceil(math.ceil(clip.size / 160) / 2)  # Mel frames -> encoder positions
    assert seen == [{"audio_ctx": positions + 64}] and positions + 64 < 500  # vs 1500 at full context
    assert wer_scores([ref], [text])["wer"] <= 0.2, text


# -------------------------------------------------------------- export --format ggml, --engine whispercpp


def test_export_ggml_writes_a_loadable_folder_and_a_card(tmp_path, hf_dir):
    from geodistill.cli import main
    from geodistill.export import export

    out = export(str(hf_dir), "ggml", tmp_path / "cpp", quantization="q8_0", name="tiny-cpp")
    model = read_ggml(out / "ggml-model.bin", load_tensors=False)
    check_loadable(model)
    assert model.dtype == "q8_0" and (out / "tokenizer.json").is_file()
    card = (out / "README.md").read_text()
    assert "# tiny-cpp" in card and "whisper.cpp" in card and "ggml" in card
    assert (
        main(
            [
                "export",
                str(hf_dir),
                "--format",
                "ggml",
                "--quantization",
                "int8",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    with pytest.raises(GeodistillError, match=r"unknown quantisation 'int8' for ggml \(choose f16, q8_0\)"):
        export(str(hf_dir), "ggml", tmp_path / "y", quantization="int8")


def test_a_dynamic_students_ggml_card_gives_the_audio_ctx_rule(tmp_path, hf_model, tiny_processor):
    from geodistill.export import export

    hf_model.config.geodistill_audio_context, hf_model.config.geodistill_context_margin = "dynamic", 48
    try:
        hf_model.save_pretrained(tmp_path / "dyn")
    finally:
        del hf_model.config.geodistill_audio_context, hf_model.config.geodistill_context_margin
    tiny_processor.save_pretrained(tmp_path / "dyn")
    out = export(str(tmp_path / "dyn"), "ggml", tmp_path / "cpp")
    assert json.loads((out / "geodistill_context.json").read_text())["geodistill_context_margin"] == 48
    card = (out / "README.md").read_text()
    assert "MARGIN = 48" in card and "audio_ctx=audio_ctx" in card and "--audio-ctx N" in card


@pytest.mark.integration
def test_engine_whispercpp_evaluates_real_speech_like_hf(tmp_path, real_speech):
    pytest.importorskip("pywhispercpp")
    from geodistill.evaluate import evaluate

    paths, _, refs = real_speech
    rows = [{"audio_filepath": p, "text": t} for p, t in zip(paths, refs, strict=True)]
    manifest = tmp_path / "clips.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cpp = evaluate("tiny.en", str(manifest), device="cpu", engine="whispercpp", batch_size=1)
    hf = evaluate("tiny.en", str(manifest), device="cpu", batch_size=1)
    assert cpp["engine"] == "whispercpp" and cpp["dtype"] == "q8_0" and cpp["n_utterances"] == len(rows)
    assert abs(cpp["wer"] - hf["wer"]) <= 0.05, (cpp["wer"], hf["wer"])


@pytest.mark.integration
def test_a_short_clip_decodes_the_same_after_a_longer_one(tiny_en_files_cpp):
    """With flash attention whisper.cpp cross-attends over audio_ctx rounded up to 256 positions, unmasked:
    'go forward' decoded after a longer clip read that clip's encoder output (measured: it came out as a
    different text). Without it, which a dynamic context gets, the order changes nothing."""
    pytest.importorskip("pywhispercpp")
    from geodistill.decoding.whispercpp import WhisperCppModel

    data = Path("/usr/share/pocketsphinx/test/data")
    if not (data / "goforward.raw").is_file():
        pytest.skip("pocketsphinx-testdata not installed (apt-get install pocketsphinx-testdata)")

    def raw(name: str) -> np.ndarray:  # 16-kHz 16-bit mono without a header
        return np.fromfile(data / f"{name}.raw", dtype="<i2").astype(np.float32) / 32768

    short = raw("goforward")
    longer = np.concatenate([raw("numbers"), raw("goforward"), raw("something")])
    _, files = tiny_en_files_cpp
    with WhisperCppModel(files["f16"], threads=1, audio_context="dynamic", margin=64) as engine:
        assert engine.audio_ctx(longer.size) > engine.audio_ctx(short.size) > 0
        alone = engine.transcribe([short])
        assert engine.transcribe([longer, short])[1] == alone[0]
