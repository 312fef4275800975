"""Training a ``student.vocab: trimmed`` student: finite losses with an online teacher and with a teacher
cache, its saved folder (trimmed head in geodistill, suppress_tokens in plain transformers), the config."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from geodistill.config import ConfigError, load_config
from geodistill.models import load_whisper
from geodistill.models.trim import KEPT_FILE, TrimmedHead, byte_ids, read_kept, trimmed_kept
from geodistill.teacher.cache import BuildOptions, CachedTeacher, CacheOptions, build_cache
from geodistill.train.loop import train
from geodistill.train.setup import build_run

SHORT = {"max_steps": 2, "eval_every": 2, "save_every": 0, "batch_size": 2, "grad_accum": 1}


def _finite(result) -> bool:
    return all(
        torch.isfinite(torch.tensor(r[k])) for r in result.history["train"] for k in ("ce", "kl", "total")
    )


def test_the_trimmed_head_keeps_every_training_label_and_the_run_saves_it(make_config):
    cfg = load_config(make_config("trim", student={"vocab": "trimmed"}, train=SHORT))
    run = build_run(cfg)
    kept = trimmed_kept(run.student.whisper)
    assert kept is not None and len(kept) < 51864 // 4
    labels = {i for utt_labels in run.train_set.label_ids() for i in utt_labels}
    assert labels and labels <= set(kept) and set(byte_ids(run.student.processor.tokenizer)) <= set(kept)

    result = train(cfg)
    assert result.exit_code == 0 and _finite(result)
    saved = result.run_dir / "adapter_final"
    assert read_kept(saved) == kept
    assert json.loads((saved / "config.json").read_text())["geodistill_vocab"] == "trimmed"
    model, _ = load_whisper(str(saved))
    assert trimmed_kept(model) == kept
    plain = WhisperForConditionalGeneration.from_pretrained(saved).eval()
    assert not isinstance(plain.proj_out, TrimmedHead)
    assert set(plain.generation_config.suppress_tokens) >= set(range(51864)) - set(kept)
    features = torch.randn(1, 80, 3000)
    assert torch.equal(model.generate(features, max_new_tokens=8), plain.generate(features, max_new_tokens=8))


def test_a_trimmed_student_keeps_the_cache_top_k_ids_and_trains_on_them(
    make_config, tmp_path, tiny_teacher_dir, tiny_data
):
    cache = build_cache(
        str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "cache", CacheOptions(top_k=8), BuildOptions()
    )
    cfg = load_config(
        make_config("trimc", student={"vocab": "trimmed"}, teacher_cache=str(cache), train=SHORT)
    )
    run = build_run(cfg)
    kept = trimmed_kept(run.student.whisper)
    # a random teacher's top-8 are all below vocab_min_prob (0.001): its likely ids are kept, the rest dropped
    every = set(CachedTeacher(cache).topk_ids())
    assert (
        kept is not None and set(CachedTeacher(cache).topk_ids(0.001)) <= set(kept) and not every <= set(kept)
    )
    result = train(cfg)  # the KL renormalises the teacher without the dropped top-k ids: finite
    assert result.exit_code == 0 and _finite(result)
    everything = make_config(
        "trimc0", student={"vocab": "trimmed", "vocab_min_prob": 0.0}, teacher_cache=str(cache)
    )
    assert every <= set(trimmed_kept(build_run(load_config(everything)).student.whisper) or [])
    assert read_kept(result.run_dir / "adapter_final") is not None


def test_vocab_choices_and_ctc_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"student\.vocab: must be one of .*got 'bogus'"):
        load_config(None, {"student.vocab": "bogus"})
    with pytest.raises(ConfigError, match=r"student\.vocab: trimmed .*ctc") as err:
        load_config(None, {"student.vocab": "trimmed", "student.init": "ctc", "loss.hidden_loss": "none"})
    assert "\n" not in str(err.value)
    assert load_config(None).student.vocab == "full"
    assert KEPT_FILE == "vocab_kept.json"
