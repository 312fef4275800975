"""A trimmed output vocabulary (``student.vocab: trimmed``, geodistill.models.trim): the kept ids, the
head's logits, greedy decoding, the losses, and a saved folder in geodistill and in plain transformers."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import WhisperForConditionalGeneration

from geodistill.errors import ModelLoadError
from geodistill.losses.kd import KLDivergenceLoss, TopKLogits
from geodistill.models import load_whisper
from geodistill.models.trim import (
    KEPT_FILE,
    TrimmedHead,
    byte_ids,
    install_trimmed_head,
    kept_ids,
    read_kept,
    save_kept,
    trimmed_kept,
    untrim,
)
from tests.conftest import make_tiny_whisper

TEXTS = (" Front center.", " The quick brown fox jumps over the lazy dog.")


def _kept(tokenizer, texts=TEXTS) -> list[int]:
    return kept_ids(tokenizer, 51864, [tokenizer(t, add_special_tokens=False).input_ids for t in texts])


def test_kept_ids_hold_labels_specials_and_bytes_sorted_and_unique(tiny_processor):
    tok = tiny_processor.tokenizer
    labels = [tok(t, add_special_tokens=False).input_ids for t in TEXTS]
    kept = kept_ids(tok, 51864, labels, extra=[12345, 50, 12345])
    assert kept == sorted(set(kept))
    assert set(sum(labels, [])) <= set(kept) and 12345 in kept
    assert set(range(50256, 51864)) <= set(kept)  # eot, sot, <|notimestamps|>, every timestamp
    bytes_ = byte_ids(tok)
    assert len(set(bytes_)) == 256 and set(bytes_) <= set(kept)
    assert all(len(tok.convert_ids_to_tokens(i)) == 1 for i in bytes_)
    assert len(kept) == len(set(sum(labels, [])) | set(bytes_) | {12345}) + 51864 - 50256


def test_trimmed_logits_equal_the_full_ones_at_kept_ids_and_are_minus_inf_elsewhere(tiny_processor):
    model = make_tiny_whisper()
    kept = torch.tensor(_kept(tiny_processor.tokenizer))
    hidden = torch.randn(2, 5, 32)
    full = model.proj_out(hidden)
    head = install_trimmed_head(model, kept.tolist())
    assert not head.training  # it follows the model's mode
    trimmed = model.proj_out(hidden)
    torch.testing.assert_close(trimmed[..., kept], full[..., kept])
    off = torch.ones(51864, dtype=torch.bool)
    off[kept] = False
    assert bool(torch.isneginf(trimmed[..., off]).all())
    assert trimmed_kept(model) == kept.tolist() and model.config.geodistill_vocab == "trimmed"


def test_cached_rows_follow_the_weights_and_gradients_reach_the_tied_embedding(tiny_processor):
    model = make_tiny_whisper()
    head = install_trimmed_head(model, _kept(tiny_processor.tokenizer))
    hidden = torch.randn(1, 3, 32)
    with torch.no_grad():
        before = head(hidden)
        assert head._cached is not None and head.rows() is head.rows()  # one gather, reused
        model.get_decoder().embed_tokens.weight.mul_(2.0)  # an in-place step: the cache must notice
        after = head(hidden)
    kept = head.kept
    torch.testing.assert_close(after[..., kept], 2 * before[..., kept])
    head.train()
    head(hidden)[..., kept].sum().backward()
    grad = model.get_decoder().embed_tokens.weight.grad
    assert grad is not None and bool(grad[kept].abs().sum() > 0)
    dropped = torch.ones(grad.shape[0], dtype=torch.bool)
    dropped[kept] = False
    assert not grad[dropped].any()  # no gradient reaches a dropped row (compared exactly, not by summing)


def test_greedy_decoding_with_the_trimmed_head_equals_the_full_model_with_the_rest_suppressed(tiny_processor):
    kept = _kept(tiny_processor.tokenizer)
    features = torch.randn(1, 80, 3000)
    full = make_tiny_whisper(seed=4)
    off = [i for i in range(51864) if i not in set(kept)]
    want = full.generate(features, max_new_tokens=12, suppress_tokens=off)
    trimmed = make_tiny_whisper(seed=4)
    install_trimmed_head(trimmed, kept)
    got = trimmed.generate(features, max_new_tokens=12)
    assert torch.equal(got, want) and set(got[0].tolist()) <= set(kept)


def test_kl_against_full_teacher_logits_renormalises_the_teacher_over_the_kept_ids():
    kept = torch.tensor([0, 2, 3])
    student = torch.full((1, 1, 5), float("-inf"))
    student[..., kept] = torch.tensor([0.5, -1.0, 2.0])
    teacher = torch.tensor([[[1.0, 3.0, 0.0, 2.0, 1.5]]])
    got = KLDivergenceLoss(1.0)(student, teacher, torch.ones(1, 1, dtype=torch.bool))
    want = KLDivergenceLoss(1.0)(student[..., kept], teacher[..., kept], torch.ones(1, 1, dtype=torch.bool))
    assert torch.isfinite(got)
    torch.testing.assert_close(got, want)
    # a top-k teacher whose ids are kept: finite, its tail bucket against the student's kept tail
    topk = TopKLogits(teacher[..., [3, 0]], torch.tensor([[[3, 0]]]), teacher.logsumexp(-1))
    assert torch.isfinite(KLDivergenceLoss(2.0)(student, topk, torch.ones(1, 1, dtype=torch.bool)))


def test_a_stored_top_k_id_the_student_dropped_leaves_the_teacher_by_hand():
    """Top-3 ids (1, 3, 0) of a 5-id teacher, id 1 not kept: the teacher is (3, 0, tail = ids 2 and 4) over
    Z - e^3, the student (3, 0, tail = id 2) over its kept ids; T = 1."""
    kept = torch.tensor([0, 2, 3])
    student = torch.full((1, 1, 5), float("-inf"))
    student[..., kept] = torch.tensor([0.5, -1.0, 2.0])
    z = [1.0, 3.0, 0.0, 2.0, 1.5]
    teacher = torch.tensor([[z]])
    topk = TopKLogits(teacher[..., [1, 3, 0]], torch.tensor([[[1, 3, 0]]]), teacher.logsumexp(-1))
    got = KLDivergenceLoss(1.0)(student, topk, torch.ones(1, 1, dtype=torch.bool))
    zt = sum(math.exp(v) for v in z) - math.exp(z[1])
    p = [math.exp(z[3]) / zt, math.exp(z[0]) / zt, (math.exp(z[2]) + math.exp(z[4])) / zt]
    zs = math.exp(0.5) + math.exp(-1.0) + math.exp(2.0)
    q = [math.exp(2.0) / zs, math.exp(0.5) / zs, math.exp(-1.0) / zs]
    want = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_a_saved_trimmed_model_reloads_trimmed_and_decodes_alike_in_plain_transformers(
    tmp_path, tiny_processor
):
    kept = _kept(tiny_processor.tokenizer)
    model = make_tiny_whisper(seed=5)
    install_trimmed_head(model, kept)
    model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    save_kept(tmp_path, kept, 51864)
    assert read_kept(tmp_path) == kept
    assert json.loads((tmp_path / "config.json").read_text())["geodistill_vocab"] == "trimmed"
    suppress = json.loads((tmp_path / "generation_config.json").read_text())["suppress_tokens"]
    assert set(suppress) == set(range(51864)) - set(kept)

    plain = WhisperForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert not isinstance(plain.proj_out, TrimmedHead)
    ours, _ = load_whisper(str(tmp_path))
    assert trimmed_kept(ours) == kept and not ours.generation_config.suppress_tokens
    features = torch.randn(1, 80, 3000)
    want = plain.generate(features, max_new_tokens=10)
    assert torch.equal(ours.generate(features, max_new_tokens=10), want)

    untrim(ours)
    assert (
        not isinstance(ours.proj_out, TrimmedHead)
        and ours.proj_out.weight is ours.model.decoder.embed_tokens.weight
    )
    assert not hasattr(ours.config, "geodistill_vocab")


def test_a_bad_kept_file_is_one_line(tmp_path):
    (tmp_path / KEPT_FILE).write_text(json.dumps({"vocab_size": 10, "kept": [3, 2]}))
    with pytest.raises(ModelLoadError, match="sorted unique ids in 0..9"):
        read_kept(tmp_path)
    (tmp_path / KEPT_FILE).write_text("{")
    with pytest.raises(ModelLoadError, match="unreadable kept-id list"):
        read_kept(tmp_path)
