"""The teacher cache: what it stores equals a direct teacher forward, training from it equals training
online, a cache made for another run is refused, and an interrupted build resumes where it stopped."""

from __future__ import annotations

import json
import math

import pytest
import torch

from geodistill.config import LossConfig, load_config
from geodistill.contracts import ModelStates, TeacherOutputs
from geodistill.errors import GeodistillError
from geodistill.losses import DistillationLoss
from geodistill.models import load_whisper
from geodistill.teacher import OnlineTeacher
from geodistill.teacher.cache import (
    BuildOptions,
    CachedTeacher,
    CacheOptions,
    build_cache,
    teacher_fingerprint,
)
from geodistill.teacher.factory import cached_teacher_for
from geodistill.train.loop import train
from tests.teacher.conftest import collated_batches

TOP_K = 16
FULL = CacheOptions(
    top_k=TOP_K, full_logits=True, store_encoder=True, dtype="float32"
)  # what the full_cache fixture stores


@pytest.fixture(scope="module")
def full_cache(tmp_path_factory, tiny_teacher_dir, tiny_data):
    """fp32, full logits + top-k, 3 utterances a shard (8 utterances: 3 shards, the last one short)."""
    out = tmp_path_factory.mktemp("caches") / "full"
    return build_cache(
        str(tiny_teacher_dir),
        str(tiny_data[0]),
        out,
        FULL,
        BuildOptions(batch_size=2, shard_size=3, device="cpu"),
    )


def counting_teacher(folder, fail_at: int | None = None) -> tuple[tuple, list[int]]:
    """A loaded teacher whose encoder forwards are counted (and the ``fail_at``-th one raises)."""
    model, processor = load_whisper(str(folder))
    calls = [0]

    def hook(module, args):
        calls[0] += 1
        if calls[0] == fail_at:
            raise RuntimeError("simulated crash")

    model.model.encoder.register_forward_pre_hook(hook)
    return (model, processor), calls


def test_cached_outputs_equal_a_direct_teacher_forward(full_cache, teacher, tiny_data):
    cached = CachedTeacher(full_cache)
    assert len(cached) == 8
    # Other batch boundaries than the build's (2): each utterance is found and padded to this batch's L.
    for batch in collated_batches(teacher, tiny_data[0], batch_size=3):
        online, got = OnlineTeacher(teacher[0])(batch), cached(batch)
        # Every real position (prompt included), i.e. up to each row's last label; beyond it is padding.
        keep = (batch["labels"] != -100).flip(1).cumsum(1).flip(1) > 0
        assert keep.sum() < keep.numel()  # the batch has padding, which must not matter
        torch.testing.assert_close(got.logits[keep], online.logits[keep], atol=2e-5, rtol=0)
        torch.testing.assert_close(got.logsumexp[keep], online.logits.logsumexp(-1)[keep], atol=2e-5, rtol=0)
        values = online.logits.topk(TOP_K, dim=-1).values
        torch.testing.assert_close(got.topk_values[keep], values[keep], atol=2e-5, rtol=0)
        # The ids point at those logits (random tiny models have near-ties, so compare values, not order).
        at_ids = online.logits.gather(-1, got.topk_indices)
        torch.testing.assert_close(at_ids[keep], got.topk_values[keep], atol=2e-5, rtol=0)
        torch.testing.assert_close(got.decoder_hidden[keep], online.decoder_hidden[keep], atol=1e-6, rtol=0)
        torch.testing.assert_close(got.encoder_hidden, online.encoder_hidden, atol=1e-6, rtol=0)
        # Padding: a uniform distribution (consistent lse), distinct ids, zero states.
        assert torch.allclose(got.logsumexp[~keep], torch.tensor(math.log(51864)))
        assert got.topk_indices[~keep].unique(dim=-1).shape[-1] == TOP_K


def test_fp16_cache_keeps_the_probable_tokens_precise_and_the_index_records_the_settings(
    tmp_path, teacher, tiny_teacher_dir, tiny_data
):
    how = BuildOptions(batch_size=4, device="cpu")
    opts = CacheOptions(top_k=8, store_encoder=True)
    out = build_cache(str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "c16", opts, how)
    batch = collated_batches(teacher, tiny_data[0], batch_size=8)[0]
    online, got = OnlineTeacher(teacher[0])(batch), CachedTeacher(out)(batch)
    keep = batch["labels"] != -100
    assert got.logits is None and got.encoder_hidden.dtype == torch.float16
    log_p = online.logits.log_softmax(-1).topk(8, dim=-1).values[keep]
    cached_log_p = (got.topk_values - got.logsumexp.unsqueeze(-1))[keep]
    # Stored as fp16 log-probs: error relative to |log p| (fp16 keeps 11 bits), not to the raw logit.
    assert ((cached_log_p - log_p).abs() <= 1e-3 * log_p.abs() + 1e-6).all()
    torch.testing.assert_close(got.encoder_hidden.float(), online.encoder_hidden, atol=5e-3, rtol=1e-3)
    index = json.loads((out / "index.json").read_text())
    assert index["status"] == "complete" and index["dtype"] == "float16" and index["top_k"] == 8
    assert index["teacher"] == str(tiny_teacher_dir.resolve())
    assert index["teacher_fingerprint"] == teacher_fingerprint(teacher[0])
    assert index["ids"] == [f"tr{i}" for i in range(8)] and index["prompt"] == [50257, 50362]
    assert index["language"] is None and index["normalise_text"] is False
    assert {"torch", "transformers", "safetensors"} <= set(index["versions"])
    # A second identical build is a no-op that returns the same folder.
    assert build_cache(str(tiny_teacher_dir), str(tiny_data[0]), out, opts, how) == out


def test_training_from_a_full_vocab_cache_gives_the_online_losses(make_config, full_cache):
    overrides = {"train": {"max_steps": 4, "eval_every": 0, "save_every": 0}}
    online = train(load_config(make_config("online", **overrides)))
    calls = []
    reader = CachedTeacher(full_cache)

    def provider(batch):
        calls.append(batch["ids"])
        return reader(batch)

    provider.offer = reader.offer
    cached = train(load_config(make_config("cached", **overrides)), teacher_provider=provider)
    assert len(calls) == 4 * 2  # every micro-batch's teacher outputs came from the cache
    assert len(online.history["train"]) == len(cached.history["train"]) == 4
    for a, b in zip(online.history["train"], cached.history["train"], strict=True):
        for part in ("total", "ce", "kl", "hidden_dec", "grad_norm"):
            assert abs(a[part] - b[part]) <= 1e-4, (a["step"], part, a[part], b[part])
    assert online.final_wer == cached.final_wer


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_topk_kl_from_the_cache_is_the_exact_bucket_kl_of_the_live_teacher(
    full_cache, teacher, tiny_data, temperature
):
    """With the logsumexp stored at the run's T, the cached top-k KL equals the live one taken at T (exact
    k + 1 bucket KL, never above the full KL); the T = 1 normaliser alone would make it an estimate."""
    batch = collated_batches(teacher, tiny_data[0], batch_size=4)[0]
    online = OnlineTeacher(teacher[0])(batch)
    values, indices = online.logits.topk(TOP_K, dim=-1)
    lse_t = (online.logits / temperature).logsumexp(-1)
    live = TeacherOutputs(
        topk_values=values, topk_indices=indices, logsumexp=lse_t, logsumexp_temperature=temperature
    )
    got = CachedTeacher(full_cache, temperature=temperature)(batch).to(torch.device("cpu"))
    assert got.logsumexp_temperature == temperature
    got.logits = None  # the loss must take the top-k form
    loss = DistillationLoss(LossConfig(kl_warmup_steps=0, hidden_loss="none", temperature=temperature))
    torch.manual_seed(0)
    student = ModelStates(logits=2 * torch.randn_like(online.logits))
    kl = {
        name: float(loss(student, t, batch["labels"], step=0, total_steps=1)[1]["kl"])
        for name, t in (("live", live), ("cached", got), ("full", online))
    }
    assert 0 < kl["cached"] <= kl["full"] and abs(kl["cached"] - kl["live"]) <= 1e-5
    if temperature != 1.0:  # the T = 1 normaliser read at T = 2: the loss can only estimate the tail
        t1 = CachedTeacher(full_cache)(batch)
        t1.logits = None
        assert t1.logsumexp_temperature == 1.0
        estimate = float(loss(student, t1, batch["labels"], step=0, total_steps=1)[1]["kl"])
        assert abs(estimate - kl["live"]) > 0.1 * kl["live"]


def test_a_cache_for_another_teacher_is_refused(full_cache, tiny_teacher_dir, other_teacher_dir, tiny_data):
    other = load_whisper(str(other_teacher_dir))
    with pytest.raises(GeodistillError, match=r"teacher_fingerprint is '[0-9a-f]{16}' in the cache"):
        CachedTeacher(full_cache, expect={"teacher_fingerprint": teacher_fingerprint(other[0])})
    with pytest.raises(GeodistillError, match="teacher is .* in the cache but .*other_teacher"):
        CachedTeacher(full_cache, expect={"teacher": str(other_teacher_dir)})
    with pytest.raises(GeodistillError, match="teacher_fingerprint"):  # nor is it overwritten
        build_cache(other, str(tiny_data[0]), full_cache, FULL, BuildOptions(shard_size=3))
    own = load_whisper(str(tiny_teacher_dir))[0]
    same = {"teacher": "./elsewhere", "teacher_fingerprint": teacher_fingerprint(own)}
    assert len(CachedTeacher(full_cache, expect=same)) == 8  # same weights by another path: accepted


def test_a_cache_for_other_data_is_refused(full_cache, tiny_teacher_dir, tiny_data, teacher):
    val_manifest = tiny_data[1]
    with pytest.raises(GeodistillError, match=r"data is .*trmanifest.jsonl.* in the cache but .*vamanifest"):
        CachedTeacher(full_cache, expect={"data": str(val_manifest)})
    with pytest.raises(GeodistillError, match="data_fingerprint"):
        build_cache(
            str(tiny_teacher_dir),
            str(val_manifest),
            full_cache,
            FULL,
            BuildOptions(shard_size=3),
        )
    batch = collated_batches(teacher, val_manifest, batch_size=2)[0]
    with pytest.raises(GeodistillError, match="utterance 'va0' is not in the teacher cache"):
        CachedTeacher(full_cache)(batch)


def test_a_cache_for_other_label_settings_is_refused(full_cache, tiny_teacher_dir, tiny_data, teacher):
    with pytest.raises(GeodistillError, match="normalise_text is False in the cache but True here"):
        CachedTeacher(full_cache, expect={"normalise_text": True})
    with pytest.raises(GeodistillError, match="language is None in the cache but 'en' here"):
        CachedTeacher(full_cache, expect={"language": "en"})
    with pytest.raises(GeodistillError, match=r"prompt is \[50257, 50362\] in the cache"):
        CachedTeacher(full_cache, expect={"prompt": [50257, 50363]})
    with pytest.raises(GeodistillError, match="normalise_text"):
        build_cache(
            str(tiny_teacher_dir),
            str(tiny_data[0]),
            full_cache,
            FULL,
            BuildOptions(shard_size=3, normalise_text=True),
        )
    # Labels that changed behind the settings' back (lower-cased text) are caught batch by batch.
    lowered = collated_batches(teacher, tiny_data[0], batch_size=2, normalise_text=True)[0]
    with pytest.raises(GeodistillError, match="utterance 'tr0': the batch's label tokens differ"):
        CachedTeacher(full_cache)(lowered)


def test_config_wire_up_builds_once_then_refuses_changed_settings(make_config, tmp_path):
    cache = tmp_path / "from_config"
    cfg = load_config(make_config("wired", teacher_cache=str(cache)))
    model_pair, calls = counting_teacher(cfg.teacher)
    reader = cached_teacher_for(cfg, teacher_model=model_pair)
    assert len(reader) == 8 and calls[0] == 4  # built over data.train at the run's batch size (2)
    again = cached_teacher_for(cfg, teacher_model=model_pair)
    assert calls[0] == 4 and len(again) == 8  # reused: no teacher forward
    assert len(cached_teacher_for(cfg)) == 8  # without a loaded teacher the spec must match
    changed = load_config(make_config("wired2", teacher_cache=str(cache), data={"normalise_text": True}))
    with pytest.raises(GeodistillError, match="normalise_text is False in the cache but True here"):
        cached_teacher_for(changed)


def test_an_interrupted_build_resumes_keeping_finished_shards(tmp_path, tiny_teacher_dir, tiny_data):
    out = tmp_path / "resumable"
    # 8 utterances: 4 shards of 1 forward each
    args = (CacheOptions(top_k=4), BuildOptions(batch_size=2, shard_size=2))
    crashing, calls = counting_teacher(tiny_teacher_dir, fail_at=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build_cache(crashing, str(tiny_data[0]), out, *args)
    assert calls[0] == 2 and (out / "shard-00000.safetensors").is_file()
    assert not (out / "shard-00001.safetensors").exists()
    with pytest.raises(GeodistillError, match="incomplete"):
        CachedTeacher(out)
    first = (out / "shard-00000.safetensors").stat()
    (out / ".shard-00001.safetensors.tmp").write_bytes(b"half a shard")  # killed mid-write

    resumed, calls = counting_teacher(tiny_teacher_dir)
    build_cache(resumed, str(tiny_data[0]), out, *args)
    assert calls[0] == 3  # shards 1..3 only
    kept = (out / "shard-00000.safetensors").stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    batch = collated_batches(resumed, tiny_data[0], batch_size=8)[0]
    online, got = OnlineTeacher(resumed[0])(batch), CachedTeacher(out)(batch)
    keep = batch["labels"] != -100
    # fp16 log-probs near log(1/V) = -10.9 (a random teacher is nearly uniform) keep about 4e-3.
    torch.testing.assert_close(
        online.logits.gather(-1, got.topk_indices)[keep], got.topk_values[keep], atol=1e-2, rtol=0
    )
    torch.testing.assert_close(
        got.topk_values[keep], online.logits.topk(4, dim=-1).values[keep], atol=1e-2, rtol=0
    )


def test_a_corrupt_shard_of_a_partial_build_is_recomputed(tmp_path, tiny_teacher_dir, tiny_data):
    out = tmp_path / "corrupt"
    args = (CacheOptions(top_k=4), BuildOptions(batch_size=4, shard_size=4))
    crashing, _ = counting_teacher(tiny_teacher_dir, fail_at=2)
    with pytest.raises(RuntimeError):
        build_cache(crashing, str(tiny_data[0]), out, *args)
    (out / "shard-00000.safetensors").write_bytes(b"\x00" * 16)  # e.g. a disk error
    again, calls = counting_teacher(tiny_teacher_dir)
    build_cache(again, str(tiny_data[0]), out, *args)
    assert calls[0] == 2 and len(CachedTeacher(out)) == 8


def test_bad_arguments_and_foreign_folders_are_refused(tmp_path, tiny_teacher_dir, tiny_data):
    with pytest.raises(GeodistillError, match=r"top_k: must be in 1\.\.51864"):
        build_cache(str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "a", CacheOptions(top_k=0))
    with pytest.raises(GeodistillError, match="encoder_pool: must divide 1500"):
        build_cache(str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "b", CacheOptions(encoder_pool=7))
    with pytest.raises(GeodistillError, match="dtype: must be one of"):
        build_cache(str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "c", CacheOptions(dtype="bfloat16"))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(GeodistillError, match="not empty and not a teacher cache"):
        build_cache(str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "d")
    with pytest.raises(GeodistillError, match="no teacher cache here"):
        CachedTeacher(tmp_path / "e")


def test_pooled_encoder_states_are_stored_at_the_pooled_rate(tmp_path, tiny_teacher_dir, tiny_data, teacher):
    out = build_cache(
        str(tiny_teacher_dir),
        str(tiny_data[0]),
        tmp_path / "pooled",
        CacheOptions(top_k=4, store_encoder=True, encoder_pool=3, dtype="float32"),
    )
    reader = CachedTeacher(out)
    batch = collated_batches(teacher, tiny_data[0], batch_size=2)[0]
    got, online = reader(batch), OnlineTeacher(teacher[0])(batch)
    assert reader.offer.encoder_pool == 3 and got.encoder_hidden.shape == (2, 500, 32)
    torch.testing.assert_close(
        got.encoder_hidden[:, 0], online.encoder_hidden[:, :3].mean(1), atol=1e-6, rtol=0
    )


def test_a_pretrained_student_trains_from_a_complete_cache_without_loading_the_teacher(
    make_config, tmp_path, tiny_teacher_dir, other_teacher_dir, tiny_data, monkeypatch
):
    cache = build_cache(
        str(tiny_teacher_dir),
        str(tiny_data[0]),
        tmp_path / "c",
        CacheOptions(top_k=8),
        BuildOptions(device="cpu"),
    )
    from geodistill.students.seq2seq import model as student_module
    from geodistill.teacher import factory as teacher_module

    loaded = []
    real_load = teacher_module.load_whisper
    for module in (teacher_module, student_module):  # where the teacher and the student are loaded
        monkeypatch.setattr(
            module, "load_whisper", lambda spec, **kw: loaded.append(spec) or real_load(spec, **kw)
        )
    student = {"init": "pretrained", "from": str(other_teacher_dir), "decoder_layers": 1}
    overrides = {"train": {"max_steps": 2, "eval_every": 0, "save_every": 0}}
    result = train(load_config(make_config("pre", student=student, teacher_cache=str(cache), **overrides)))
    assert loaded == [str(other_teacher_dir)]  # the student only: the teacher's weights were never read
    assert len(result.history["train"]) == 2 and all(row["kl"] > 0 for row in result.history["train"])
    # A copy student needs the teacher's weights, so the same cache still loads it.
    loaded.clear()
    train(load_config(make_config("copy", teacher_cache=str(cache), **overrides)))
    assert loaded == [str(tiny_teacher_dir)]


def test_cache_options_are_recorded_with_extra_temperatures_and_layers_sorted_once():
    opts = CacheOptions(temperatures=(3, 1.0, 2.0, 3.0), cross_kv_layers=(2, 0, 2)).normalised()
    assert opts.temperatures == (2.0, 3.0) and opts.cross_kv_layers == (0, 2)  # T = 1 is always stored
    assert opts.top_k == 64 and opts.storage_dtype == torch.float16
    assert BuildOptions(shard_size=3, language="en").recorded() == {
        "language": "en",
        "task": "transcribe",
        "timestamp_probability": 0.0,
        "normalise_text": False,
        "min_duration": 1.0,
        "max_duration": 30.0,
        "timestamp_seed": None,  # recorded only when some rows draw timestamps
        "shard_size": 3,
    }
    stamped = BuildOptions(timestamp_probability=0.2, seed=7).recorded()
    assert (stamped["timestamp_probability"], stamped["timestamp_seed"]) == (0.2, 7)
