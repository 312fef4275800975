"""A large-v3-shaped teacher (51,866 tokens, 128 Mel bins) trains a smaller pretrained multilingual student
(51,865 tokens, 80 Mel bins) end to end: online and from a top-k cache, through the token map (issue 24)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import WhisperFeatureExtractor, WhisperProcessor

from geodistill.config import load_config
from geodistill.models import load_whisper
from geodistill.train.loop import train
from tests.conftest import make_tiny_whisper, multilingual_generation_config
from tests.train.conftest import TEACHER_TEXT_CTX


def _save(folder: Path, vocab: int, mels: int, tokenizer, large_v3: bool, seed: int) -> Path:
    model = make_tiny_whisper(d_model=32, layers=2, seed=seed, vocab=vocab, text_ctx=TEACHER_TEXT_CTX)
    model.config.num_mel_bins = mels
    model.model.encoder.conv1 = torch.nn.Conv1d(mels, 32, kernel_size=3, padding=1)
    for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
        setattr(model.config, key, 50257)  # the multilingual layout: <|endoftext|> 50257, sot 50258
    model.config.decoder_start_token_id = 50258
    model.generation_config = multilingual_generation_config(large_v3=large_v3)
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=mels), tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pair(tmp_path_factory, large_v3_tokenizer, base_tokenizer) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("v3")
    teacher = _save(root / "teacher", 51866, 128, large_v3_tokenizer, large_v3=True, seed=1)
    student = _save(root / "student", 51865, 80, base_tokenizer, large_v3=False, seed=2)
    return teacher, student


@pytest.mark.parametrize("cached", [False, True], ids=["online", "top-k cache"])
def test_a_large_v3_teacher_trains_a_smaller_multilingual_student(make_config, pair, tmp_path, cached):
    teacher, student = pair
    sections = {
        "teacher": str(teacher),
        "student": {"init": "pretrained", "from": str(student), "lora": {"r": 0}, "decoder_layers": None},
        "data": {"language": "en"},
        "train": {"max_steps": 4, "eval_every": 0, "save_every": 0, "grad_accum": 1},
    }
    if cached:  # built by the run itself, as a user's first run builds it
        sections["teacher_cache"] = str(tmp_path / "cache")
    result = train(load_config(make_config("v3", **sections)))
    assert result.exit_code == 0
    kl = [r["kl"] for r in result.history["train"]]
    assert len(kl) == 4 and all(math.isfinite(x) and x > 0 for x in kl)  # the teacher really taught
    saved, _ = load_whisper(str(result.run_dir / "adapter_final"))
    assert saved.config.vocab_size == 51865 and saved.config.num_mel_bins == 80
    if cached:
        index = json.loads((tmp_path / "cache" / "index.json").read_text())
        # the teacher's ids and size, with the raw logits of <|yue|> (50358), the id the student lacks
        assert (index["language"], index["vocab_size"], index["extra_ids"]) == ("en", 51866, [50358])
