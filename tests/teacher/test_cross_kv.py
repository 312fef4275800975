"""Frozen cross-attention keys/values handed from the teacher to a copy student: which layers qualify,
that reusing them changes no number, and that a cache stores and serves them."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from geodistill.cli import main as cli_main
from geodistill.config import load_config
from geodistill.errors import GeodistillError
from geodistill.losses import DistillationLoss
from geodistill.models.student import copy_layers
from geodistill.students.seq2seq import setup as run_setup
from geodistill.students.seq2seq.sharing import cross_kv_plan
from geodistill.teacher import OnlineTeacher
from geodistill.teacher.cache import BuildOptions, CachedTeacher, CacheOptions, build_cache
from geodistill.teacher.outputs import forward_states
from geodistill.train.loop import compute_loss, train
from geodistill.train.setup import build_run
from tests.teacher.conftest import collated_batches

TEXT_SIDE = {"lora": {"r": 4, "alpha": 8, "dropout": 0.1, "targets": "decoder-text-side"}}


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def test_given_cross_kv_replace_the_projections_and_change_nothing(teacher, tiny_data):
    model = teacher[0]
    batch = collated_batches(teacher, tiny_data[0], batch_size=3)[0]
    dec = batch["decoder_input_ids"]
    ref = forward_states(model, dec, input_features=batch["input_features"], keep_cross_kv=(0, 1))
    assert set(ref.cross_kv) == {0, 1}
    keys, values = ref.cross_kv[1]
    assert keys.shape == values.shape == (3, 2, 1500, 16)  # (B, heads, frames, head_dim)
    # A copy student keeping teacher layer 1 only: its layer 0 is the teacher's layer 1.
    student = copy_layers(model, decoder_layers=[1])
    k_calls = count_calls(student.model.decoder.layers[0].encoder_attn.k_proj)
    own = forward_states(student, dec, encoder_hidden=ref.encoder_hidden)
    assert k_calls[0] == 1
    given = forward_states(student, dec, encoder_hidden=ref.encoder_hidden, cross_kv={0: ref.cross_kv[1]})
    assert k_calls[0] == 1  # the projection did not run
    assert torch.equal(given.logits, own.logits) and torch.equal(given.decoder_hidden, own.decoder_hidden)


@pytest.mark.parametrize(
    ("student", "train_overrides", "expected"),
    [
        (TEXT_SIDE, {}, {0: 1}),
        ({"decoder_layers": 2, **TEXT_SIDE}, {}, {0: 0, 1: 1}),
        ({"lora": {"targets": "decoder-cross-q"}}, {}, {0: 1}),
        (
            {"lora": {"targets": [r"model\.decoder\.layers\.0\.encoder_attn\.v_proj"]}, "decoder_layers": 2},
            {},
            {1: 1},
        ),
        ({}, {}, {}),  # the default preset decoder-attn-qv adapts encoder_attn.v_proj: it trains
        ({"lora": {"targets": "decoder-all-linear"}}, {}, {}),
        ({"lora": {"r": 0}}, {}, {}),  # no adapters: the decoder trains in full
        ({"freeze_encoder": False, **TEXT_SIDE}, {}, {}),  # the encoder output is not the teacher's
        ({"encoder_layers": 1, **TEXT_SIDE}, {}, {}),
        (TEXT_SIDE, {"grad_checkpointing": True}, {}),  # transformers drops the cache under checkpointing
    ],
)
def test_the_plan_names_exactly_the_layers_whose_cross_attention_projections_stay_frozen(
    make_config, teacher, student, train_overrides, expected
):
    cfg = load_config(make_config(student=student, train=train_overrides))
    assert cross_kv_plan(cfg, teacher[0].config) == expected


def test_reusing_the_online_teachers_cross_kv_changes_no_loss_and_skips_the_projection(make_config):
    cfg = load_config(make_config(student=TEXT_SIDE))
    run = build_run(cfg)
    assert run.student.cross_kv == {0: 1} and run.teacher.offer.cross_kv_layers == (1,)
    loss_fn = DistillationLoss(cfg.loss)
    batch = run.collate([run.train_set[i] for i in range(2)])
    k_calls = count_calls(run.student.whisper.model.decoder.layers[0].encoder_attn.k_proj)
    torch.manual_seed(0)  # the same dropout draws in both forwards
    reused, parts = compute_loss(run, loss_fn, batch, step=1)
    assert k_calls[0] == 0
    run.student.cross_kv = {}
    torch.manual_seed(0)
    computed, parts_computed = compute_loss(run, loss_fn, batch, step=1)
    assert k_calls[0] == 1
    assert abs(float(reused) - float(computed)) <= 1e-6
    assert all(abs(float(parts[k]) - float(parts_computed[k])) <= 1e-6 for k in parts)


def test_a_cache_stores_the_cross_kv_and_training_from_it_gives_the_online_losses(
    make_config, tmp_path, tiny_teacher_dir, tiny_data, teacher, monkeypatch
):
    out = build_cache(
        str(tiny_teacher_dir),
        str(tiny_data[0]),
        tmp_path / "kv",
        CacheOptions(top_k=8, full_logits=True, dtype="float32", cross_kv_layers=(1,)),
        BuildOptions(batch_size=2, shard_size=3, device="cpu"),
    )
    reader = CachedTeacher(out)
    assert reader.offer.cross_kv_layers == (1,)
    batch = collated_batches(teacher, tiny_data[0], batch_size=3)[1]  # other boundaries than the build's
    live = OnlineTeacher(teacher[0], cross_kv_layers=(1,))(batch)
    got = reader(batch)
    assert set(got.cross_kv) == {1}
    for stored, direct in zip(got.cross_kv[1], live.cross_kv[1], strict=True):
        torch.testing.assert_close(stored, direct, atol=1e-6, rtol=0)

    overrides = {"student": TEXT_SIDE, "train": {"max_steps": 3, "eval_every": 0, "save_every": 0}}
    online = train(load_config(make_config("online", **overrides)))
    # The student takes the cached keys/values of its layer 0 (teacher layer 1), never its own.
    seen = []
    original = run_setup.shared_cross_kv
    monkeypatch.setattr(run_setup, "shared_cross_kv", lambda *a: seen.append(original(*a)) or seen[-1])
    cached = train(load_config(make_config("cached", **overrides)), teacher_provider=reader)
    assert seen == [{0: 1}]
    for a, b in zip(online.history["train"], cached.history["train"], strict=True):
        for part in ("total", "ce", "kl", "hidden_dec", "grad_norm"):
            assert abs(a[part] - b[part]) <= 1e-4, (a["step"], part, a[part], b[part])


def test_the_config_switch_stores_the_students_layers_and_says_what_it_costs(make_config, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="geodistill")
    on = load_config(
        make_config("on", student=TEXT_SIDE, teacher_cache=str(tmp_path / "on"), teacher_cache_cross_kv=True)
    )
    run = build_run(on)
    assert json.loads((tmp_path / "on" / "index.json").read_text())["cross_kv_layers"] == [1]
    assert run.student.cross_kv == {0: 1} and "reused from teacher layers [1]" in caplog.text
    caplog.clear()
    off = load_config(make_config("off", student=TEXT_SIDE, teacher_cache=str(tmp_path / "off")))
    run = build_run(off)
    assert json.loads((tmp_path / "off" / "index.json").read_text())["cross_kv_layers"] == []
    assert run.student.cross_kv == {}
    assert "teacher_cache_cross_kv: true" in caplog.text and "0.2 MB per utterance" in caplog.text


def test_cli_cache_takes_the_layers_and_refuses_a_layer_the_teacher_lacks(
    tmp_path, tiny_teacher_dir, tiny_data
):
    args = [
        "--debug",
        "cache",
        "--teacher",
        str(tiny_teacher_dir),
        "--data",
        str(tiny_data[0]),
        "--device",
        "cpu",
    ]
    assert (
        cli_main([*args, "--out", str(tmp_path / "ok"), "--top-k", "4", "--cross-kv-layers", "0", "1"]) == 0
    )
    index = json.loads((tmp_path / "ok" / "index.json").read_text())
    assert index["cross_kv_layers"] == [0, 1] and index["status"] == "complete"
    with pytest.raises(
        GeodistillError, match=r"cross_kv_layers: teacher decoder layers are 0\.\.1, got \[5\]"
    ):
        build_cache(
            str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "bad", CacheOptions(cross_kv_layers=(5,))
        )
