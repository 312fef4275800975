"""Exports of a trimmed-vocabulary student (``student.vocab: trimmed``): a CTranslate2 model over its K kept
ids that geodistill's ct2 engine and faster-whisper decode, and the refusals of the formats that cannot."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geodistill.cli import main
from geodistill.decoding.engines import load_engine
from geodistill.decoding.whisper import generate_ids
from geodistill.models import load_whisper
from geodistill.models.ct2 import read_ct2
from geodistill.models.trim import install_trimmed_head, kept_ids, save_kept, untrim
from tests.conftest import make_tiny_whisper

pytest.importorskip("ctranslate2")

TEXT = " Front center. Front Center. front center, the front and the center!"


def _kept(tokenizer) -> list[int]:
    return kept_ids(tokenizer, 51864, [tokenizer(TEXT, add_special_tokens=False).input_ids])


def _save_trimmed(model, processor, kept: list[int], folder: Path) -> Path:
    install_trimmed_head(model, kept)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    save_kept(folder, kept, int(model.config.vocab_size))
    return folder


def _export(source: Path | str, fmt: str, out: Path, *extra: str) -> Path:
    assert main(["export", str(source), "--format", fmt, "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def trimmed_student(tmp_path_factory, tiny_processor) -> tuple[Path, list[int]]:
    """A random tiny student trimmed to ``TEXT``'s ids; its special tokens' rows shrunk so it writes text."""
    model = make_tiny_whisper(d_model=64, layers=2, heads=1, seed=5)
    with torch.no_grad():
        model.model.decoder.embed_tokens.weight[50256:] *= 0.01
    kept = _kept(tiny_processor.tokenizer)
    return _save_trimmed(model, tiny_processor, kept, tmp_path_factory.mktemp("trimmed")), kept


def test_ct2_export_has_k_rows_remapped_ids_and_the_kept_file(tmp_path, trimmed_student):
    folder, kept = trimmed_student
    out = _export(folder, "ct2", tmp_path / "ct2", "--quantization", "float32")
    vocabulary = json.loads((out / "vocabulary.json").read_text())
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    names = {i: t for t, i in tokenizer["model"]["vocab"].items()}
    assert len(vocabulary) == len(kept) and vocabulary[kept.index(50362)] == "<|notimestamps|>"
    assert vocabulary[kept.index(50363)] == "<|0.00|>" and vocabulary[-1] == "<|30.00|>"
    assert all(vocabulary[n] == names[i] for n, i in enumerate(kept) if i < 50256)
    variables, aliases = read_ct2(out / "model.bin")
    assert tuple(variables["decoder/embeddings/weight"].shape) == (len(kept), 64)
    assert aliases["decoder/projection/weight"] == "decoder/embeddings/weight"
    rows = load_whisper(str(folder))[0].model.decoder.embed_tokens.weight[kept]
    torch.testing.assert_close(variables["decoder/embeddings/weight"].float(), rows.detach())
    config = json.loads((out / "config.json").read_text())
    assert config["suppress_ids"] == [] and config["suppress_ids_begin"] == [220, kept.index(50256)]
    assert json.loads((out / "vocab_kept.json").read_text())["kept"] == kept
    trimmed_tok = json.loads((out / "tokenizer.json").read_text())
    original = tokenizer["model"]["vocab"]
    assert {t: kept[n] for t, n in trimmed_tok["model"]["vocab"].items()} == {
        t: i for t, i in original.items() if i in set(kept)
    }
    added = {t["content"]: t["id"] for t in trimmed_tok["added_tokens"]}
    assert added["<|endoftext|>"] == kept.index(50256) and added["<|notimestamps|>"] == kept.index(50362)


def test_the_ct2_engine_decodes_a_trimmed_export_as_the_hf_engine(tmp_path, trimmed_student):
    folder, kept = trimmed_student
    out = _export(folder, "ct2", tmp_path / "ct2", "--quantization", "float32")
    hf, hf_processor = load_whisper(str(folder))
    ct2, ct2_processor, _ = load_engine(str(out), device="cpu", engine="ct2", compute_type="float32")
    features = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(0))
    want = generate_ids(hf, features, max_new_tokens=12)
    got = generate_ids(ct2, features, max_new_tokens=12)
    assert want.shape == got.shape and torch.equal(torch.tensor(kept)[got], want)  # index n is id kept[n]
    texts = hf_processor.batch_decode(want, skip_special_tokens=True)
    assert any(t.strip() for t in texts)
    assert ct2_processor.batch_decode(got, skip_special_tokens=True) == texts


def test_ggml_refuses_a_trimmed_student_in_one_line(tmp_path, trimmed_student, capsys):
    folder, _ = trimmed_student
    assert main(["export", str(folder), "--format", "ggml", "--out", str(tmp_path / "g")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "student.vocab: trimmed" in errors[0] and "hf, ct2 or onnx" in errors[0]


@pytest.mark.integration
def test_faster_whisper_transcribes_speech_with_a_trimmed_tiny_en_as_with_the_full_one(tmp_path, alsa_wav):
    faster_whisper = pytest.importorskip("faster_whisper")
    model, processor = load_whisper("tiny.en")
    untrim(model)
    full = _export("tiny.en", "ct2", tmp_path / "full", "--quantization", "int8")
    kept = _kept(processor.tokenizer)
    trimmed = _export(_save_trimmed(model, processor, kept, tmp_path / "hf"), "ct2", tmp_path / "trim")
    assert len(json.loads((trimmed / "vocabulary.json").read_text())) == len(kept) < 2000

    def transcribe(folder: Path) -> tuple[str, list[int]]:
        fw = faster_whisper.WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=1)
        segments, _ = fw.transcribe(str(alsa_wav), beam_size=1, language="en")
        segments = list(segments)
        return "".join(s.text for s in segments), [t for s in segments for t in s.tokens]

    full_text, full_ids = transcribe(full)
    trimmed_text, _ = transcribe(trimmed)
    assert "front" in full_text.lower() and "center" in full_text.lower()
    assert set(full_ids) <= set(kept)  # the full model wrote only kept ids, so the trimmed one must agree
    assert trimmed_text == full_text


def test_onnx_export_traces_the_trimmed_head_and_generates_like_hf(tmp_path, trimmed_student):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    folder, kept = trimmed_student
    out = _export(folder, "onnx", tmp_path / "onnx")
    assert json.loads((out / "vocab_kept.json").read_text())["kept"] == kept
    decoder = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": np.array([[50257, 50362]]),
        "encoder_hidden_states": np.ones((1, 7, 64), np.float32),
    }
    logits = decoder.run(["logits"], feeds)[0]
    assert logits.shape == (1, 2, 51864)  # the trimmed head is in the graph: -inf off the kept ids
    assert np.isfinite(logits[..., kept]).all() and np.isneginf(np.delete(logits, kept, axis=-1)).all()
    hf, _ = load_whisper(str(folder))
    onnx, _, _ = load_engine(str(out), device="cpu", engine="onnx")
    features = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(1))
    want = generate_ids(hf, features, max_new_tokens=12)
    assert generate_ids(onnx, features, max_new_tokens=12).tolist() == want.tolist()
    assert set(want.flatten().tolist()) <= set(kept)
