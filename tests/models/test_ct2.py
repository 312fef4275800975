"""CTranslate2 reading and conversion: exact round trip, corrupt files, tokenizer fix, generation config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geodistill.errors import ModelLoadError
from geodistill.models import ct2, loading
from geodistill.models.loading import load_whisper
from tests.conftest import make_tiny_whisper
from tests.models.ct2_writer import TIED, ct2_variables, encode_model_bin, write_ct2_folder


@pytest.fixture(scope="module")
def original():
    return make_tiny_whisper(d_model=32, layers=2, heads=2, seed=3)


@pytest.fixture
def ct2_folder(tmp_path, original, tiny_en_files):
    return write_ct2_folder(
        original, tmp_path / "ct2-tiny", tiny_en_files.tokenizer_file, tiny_en_files.config_file
    )


def _assert_same_weights(got, want):
    got_sd, want_sd = got.state_dict(), want.state_dict()
    assert got_sd.keys() == want_sd.keys()
    for name, tensor in want_sd.items():
        assert got_sd[name].dtype == tensor.dtype, name
        assert torch.equal(got_sd[name], tensor), name


@pytest.mark.parametrize("storage", [np.float32, np.float16])
def test_round_trip_is_bit_exact(tmp_path, gd_cache, original, tiny_en_files, storage):
    folder = write_ct2_folder(
        original, tmp_path / "m", tiny_en_files.tokenizer_file, tiny_en_files.config_file, dtype=storage
    )
    dtype = torch.float32 if storage is np.float32 else torch.float16
    model, processor = load_whisper(str(folder), dtype=dtype)
    _assert_same_weights(model, original.to(dtype))
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()
    for key in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads", "vocab_size"):
        assert getattr(model.config, key) == getattr(original.config, key), key
    assert not model.training
    assert processor.feature_extractor.feature_size == 80


def test_generation_config_and_processor_from_ct2_files(ct2_folder, gd_cache):
    model, processor = load_whisper(str(ct2_folder))
    gen = model.generation_config
    assert (gen.decoder_start_token_id, gen.eos_token_id, gen.pad_token_id) == (50257, 50256, 50256)
    assert (gen.no_timestamps_token_id, gen.max_length, gen.is_multilingual) == (50362, 448, False)
    assert gen.begin_suppress_tokens == [220, 50256]
    assert 50257 in gen.suppress_tokens and gen.alignment_heads == [[1, 0]]
    assert processor.tokenizer.pad_token == "<|endoftext|>"
    assert processor.tokenizer.normalize("The colour, Mister Smith!") == "the color mister smith"


def test_conversion_is_cached_and_reused(ct2_folder, gd_cache, monkeypatch):
    load_whisper(str(ct2_folder))
    (converted,) = (gd_cache / "models").iterdir()
    assert (converted / "model.safetensors").is_file() and (converted / "normalizer.json").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("converted twice")

    monkeypatch.setattr(loading, "convert_ct2", fail)
    load_whisper(str(ct2_folder))
    assert list((gd_cache / "models").iterdir()) == [converted]


def test_crash_during_conversion_leaves_no_model(ct2_folder, gd_cache, monkeypatch):
    real = loading.convert_ct2

    def crash(parts, config, tokenizer, out_dir):
        real(parts, config, tokenizer, out_dir)  # a complete write, then a crash before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(loading, "convert_ct2", crash)
    with pytest.raises(KeyboardInterrupt):
        load_whisper(str(ct2_folder))
    assert list((gd_cache / "models").iterdir()) == []
    monkeypatch.setattr(loading, "convert_ct2", real)
    model, _ = load_whisper(str(ct2_folder))
    assert model.config.d_model == 32


def _write_bin(path, original, **kwargs):
    path.write_bytes(encode_model_bin(ct2_variables(original), TIED, **kwargs))
    return path


def test_truncated_file_names_file_and_variable(tmp_path, original):
    path = _write_bin(tmp_path / "model.bin", original)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ModelLoadError, match=r"model\.bin: truncated or corrupt while reading data of '[\w/]+'"
    ):
        ct2.read_ct2(path)


def test_wrong_version_and_spec_and_trailing_bytes(tmp_path, original):
    with pytest.raises(ModelLoadError, match="format version 5, expected 6"):
        ct2.read_ct2(_write_bin(tmp_path / "a.bin", original, version=5))
    with pytest.raises(ModelLoadError, match="spec 'TransformerSpec' is not a Whisper model"):
        ct2.read_ct2(_write_bin(tmp_path / "b.bin", original, spec="TransformerSpec"))
    path = _write_bin(tmp_path / "c.bin", original)
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(ModelLoadError, match="2 unexpected bytes after the last alias"):
        ct2.read_ct2(path)


def test_empty_file_and_missing_file(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="truncated or corrupt while reading format version"):
        ct2.read_ct2(tmp_path / "model.bin")
    with pytest.raises(ModelLoadError, match="no such file"):
        ct2.read_ct2(tmp_path / "nope.bin")


def test_split_parts_read_like_one_file(tmp_path, original):
    data = encode_model_bin(ct2_variables(original), TIED)
    (tmp_path / "p1").write_bytes(data[:1001])
    (tmp_path / "p2").write_bytes(data[1001:])
    (tmp_path / "whole").write_bytes(data)
    split, _ = ct2.read_ct2([tmp_path / "p1", tmp_path / "p2"])
    whole, aliases = ct2.read_ct2(tmp_path / "whole")
    assert aliases == TIED and split.keys() == whole.keys()
    assert all(torch.equal(split[k], whole[k]) for k in whole)


def _mapped(original, edit):
    variables = ct2_variables(original)
    edit(variables)
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in variables.items()}
    dims = ct2.whisper_dims(tensors, TIED, "src")
    return ct2.ct2_state_dict(tensors, TIED, dims, "src")


def test_every_variable_must_be_used_and_present(original):
    with pytest.raises(ModelLoadError, match=r"src: 1 CTranslate2 variables not understood.*encoder/extra"):
        _mapped(original, lambda v: v.update({"encoder/extra": np.zeros(3, np.float16)}))
    with pytest.raises(
        ModelLoadError, match="src: missing variable 'decoder/layer_1/attention/linear_2/bias'"
    ):
        _mapped(original, lambda v: v.pop("decoder/layer_1/attention/linear_2/bias"))
    with pytest.raises(ModelLoadError, match="'decoder/activation' is 1, Whisper needs 3"):
        _mapped(original, lambda v: v.update({"decoder/activation": np.int8(1)}))


def test_quantized_weights_are_refused(original):
    variables = {k: torch.from_numpy(np.asarray(v)) for k, v in ct2_variables(original).items()}
    variables["encoder/conv2/weight"] = variables["encoder/conv2/weight"].to(torch.int8)
    with pytest.raises(
        ModelLoadError, match="'encoder/conv2/weight' is stored as torch.int8 \\(a quantized model\\)"
    ):
        ct2.build_whisper(variables, TIED, "src")


def test_heads_default_to_64_wide_when_not_stored():
    wide = make_tiny_whisper(d_model=128, layers=1, heads=4)
    variables = {k: torch.from_numpy(np.asarray(v)) for k, v in ct2_variables(wide).items()}
    assert ct2.whisper_dims(variables, TIED, "src")["encoder_attention_heads"] == 4
    for key in ("encoder/num_heads", "decoder/num_heads"):
        del variables[key]
    dims = ct2.whisper_dims(variables, TIED, "src")
    assert dims["encoder_attention_heads"] == dims["decoder_attention_heads"] == 2  # 128 / 64


def test_wrong_shape_is_a_load_error(original):
    variables = {k: torch.from_numpy(np.asarray(v)) for k, v in ct2_variables(original).items()}
    variables["decoder/layer_0/ffn/linear_1/bias"] = torch.zeros(31, dtype=torch.float16)
    with pytest.raises(ModelLoadError, match="src: weights do not fit a Whisper model"):
        ct2.build_whisper(variables, TIED, "src")


def test_first_merge_is_restored_only_when_missing(tiny_en_files):
    tok = json.loads(tiny_en_files.tokenizer_file.read_text(encoding="utf-8"))
    assert ct2._restore_first_merge(tok) is False
    tok["model"]["merges"].remove("Ġ t")
    assert ct2._restore_first_merge(tok) is True
    assert tok["model"]["merges"][0] == "Ġ t"
    as_pairs = {"model": {"vocab": {"Ġt": 1}, "merges": [["Ġ", "a"]]}}
    assert ct2._restore_first_merge(as_pairs) is True and as_pairs["model"]["merges"][0] == ["Ġ", "t"]


@pytest.mark.integration
def test_base_tokenizer_encodes_the_as_one_token(tmp_path, base_source, tiny_en_files):
    (tmp_path / "base").mkdir()
    (tmp_path / "en").mkdir()
    tok = ct2.load_ct2_tokenizer(base_source.tokenizer_file, tmp_path / "base")
    english = ct2.load_ct2_tokenizer(tiny_en_files.tokenizer_file, tmp_path / "en")
    (the,) = tok.encode(" the", add_special_tokens=False)
    assert english.encode(" the", add_special_tokens=False) == [english.get_vocab()["Ġthe"]]
    assert the == tok.get_vocab()["Ġthe"]
    if tok.get_vocab()["Ġthe"] == english.get_vocab()["Ġthe"]:
        assert the == english.encode(" the", add_special_tokens=False)[0]
    assert (
        tok.decode(tok.encode(" the cat sat on the mat", add_special_tokens=False))
        == " the cat sat on the mat"
    )


@pytest.mark.integration
def test_multilingual_generation_config(tmp_path, base_source):
    tok = ct2.load_ct2_tokenizer(base_source.tokenizer_file, tmp_path)
    config = json.loads(base_source.config_file.read_text())
    gen = ct2.build_generation_config(config, tok, 51865, "base")
    assert gen.is_multilingual and gen.decoder_start_token_id == 50258 and gen.eos_token_id == 50257
    assert gen.lang_to_id["<|en|>"] == 50259 and gen.lang_to_id["<|fr|>"] == 50265
    assert gen.task_to_id == {"transcribe": 50359, "translate": 50358}
    assert gen.no_timestamps_token_id == 50363 and gen.begin_suppress_tokens == [220, 50257]
    with pytest.raises(ModelLoadError, match="config.json lacks \\['lang_ids'\\]"):
        ct2.build_generation_config({k: v for k, v in config.items() if k != "lang_ids"}, tok, 51865, "base")


def test_unwritable_cache_is_a_load_error(ct2_folder, tmp_path, monkeypatch):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    monkeypatch.setenv("GEODISTILL_CACHE", str(blocker))
    with pytest.raises(
        ModelLoadError, match=r"cannot write the converted 'ct2-tiny' to .*set GEODISTILL_CACHE"
    ):
        load_whisper(str(ct2_folder))


@pytest.mark.integration
def test_vendored_tiny_en_files_match_the_embedded_package(tiny_en_source, tiny_en_files):
    assert tiny_en_files.tokenizer_file.read_bytes() == tiny_en_source.tokenizer_file.read_bytes()
    assert tiny_en_files.config_file.read_bytes() == tiny_en_source.config_file.read_bytes()
