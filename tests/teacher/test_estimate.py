"""The cache's size estimate against the real size, the disk and --max-size refusals, and which runs get
encoder states stored (geodistill.teacher.cache.estimate, teacher.factory.encoder_states_read)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from geodistill.cli import main
from geodistill.config import load_config
from geodistill.errors import StorageError
from geodistill.runlock import HOLDER, LOCK
from geodistill.teacher.cache import BuildOptions, CacheOptions, build_cache, estimate
from geodistill.teacher.cache import build as build_module
from geodistill.teacher.factory import encoder_states_read
from tests.conftest import make_tiny_whisper

HOW = BuildOptions(batch_size=4, shard_size=3, device="cpu")


def _built(tmp_path, teacher, data, opts, name="c"):
    """(the estimate the build made before writing, the cache's real size in bytes)."""
    seen = []
    real_check = build_module.check_budget

    def recording(out, est, max_size):
        assert not (out / "index.json").exists()  # estimated before a byte of the cache is written
        seen.append(est)
        real_check(out, est, max_size)

    build_module.check_budget = recording
    try:
        out = build_cache(str(teacher), str(data), tmp_path / name, opts, HOW)
    finally:
        build_module.check_budget = real_check
    files = [p for p in out.rglob("*") if p.is_file() and p.name not in (LOCK, HOLDER, "bad_samples.jsonl")]
    return seen[0], sum(p.stat().st_size for p in files)


@pytest.mark.parametrize(
    "opts",
    [
        CacheOptions(top_k=8),
        CacheOptions(top_k=8, store_encoder=True),
        CacheOptions(top_k=8, full_logits=True, dtype="float32", cross_kv_layers=(1,)),
    ],
    ids=["default", "encoder", "full-logits-fp32-kv"],
)
def test_the_estimate_is_within_10_percent_of_the_real_size(opts, tmp_path, tiny_teacher_dir, tiny_data):
    est, real = _built(tmp_path, tiny_teacher_dir, tiny_data[0], opts)
    assert est.n_utterances == 8
    lengths = [
        n
        for shard in sorted((tmp_path / "c").glob("shard-*.safetensors"))
        for n in json.loads(_metadata(shard)["lengths"])
    ]
    assert est.n_tokens == sum(lengths)  # decoder positions counted exactly
    assert abs(est.total - real) <= 0.10 * real, (est.total, real)


def _errors(capsys) -> list[str]:
    """The error lines of stderr (the rest: the estimate's log line, transformers' loading bar)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]


def _metadata(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def test_the_per_hour_table_matches_a_real_tiny_shaped_cache(tmp_path, tiny_processor, tiny_data):
    teacher = tmp_path / "tiny-shaped"
    make_tiny_whisper(d_model=384, layers=1, heads=6).save_pretrained(teacher)  # tiny's widths, 1 layer
    tiny_processor.save_pretrained(teacher)
    opts = CacheOptions(store_encoder=True)
    est, _ = _built(tmp_path, teacher, tiny_data[0], opts)
    shards = sum(p.stat().st_size for p in (tmp_path / "c").glob("shard-*.safetensors"))
    seconds = 1.55  # the tiny data's mean clip (1.2 s + 0.1 s per clip, 8 clips)
    text_per_second = (est.n_tokens / est.n_utterances - estimate.PROMPT_TOKENS) / seconds
    per_utterance = estimate.per_hour("tiny", opts, seconds, text_per_second) * seconds / 3600
    assert abs(per_utterance - shards / 8) <= 0.10 * shards / 8


def test_a_disk_without_room_is_refused_in_one_line_before_any_shard(
    tmp_path, tiny_teacher_dir, tiny_data, monkeypatch, capsys
):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(2**30, 2**30 - 2**20, 2**20))
    said = r"needs about .* more \(\+ 256\.0 MiB margin\) but the disk has 1\.0 MiB"
    with pytest.raises(StorageError, match=said):
        build_cache(str(tiny_teacher_dir), str(tiny_data[0]), tmp_path / "full", CacheOptions(top_k=8), HOW)
    assert not list((tmp_path / "full").glob("shard-*")) and not (tmp_path / "full" / "index.json").exists()
    args = ["cache", "--teacher", str(tiny_teacher_dir), "--data", str(tiny_data[0]), "--out"]
    assert main([*args, str(tmp_path / "cli"), "--device", "cpu", "--top-k", "8"]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "the disk has 1.0 MiB free" in err[0]


def test_max_size_below_the_estimate_is_refused_naming_the_flag(
    tmp_path, tiny_teacher_dir, tiny_data, capsys
):
    args = ["cache", "--teacher", str(tiny_teacher_dir), "--data", str(tiny_data[0]), "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "capped"), "--max-size", "64K"]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "--max-size 64.0 KiB: below this cache's estimated" in err[0]
    assert not list((tmp_path / "capped").glob("shard-*"))
    with pytest.raises(SystemExit) as stop:
        main([*args, "--out", str(tmp_path / "c2"), "--max-size", "lots"])
    assert stop.value.code == 2 and "--max-size: expected a size such as 50G" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "ok"), "--max-size", "1G"]) == 0
    assert json.loads((tmp_path / "ok" / "index.json").read_text())["store_encoder"] is False


def test_encoder_states_are_stored_only_for_a_run_that_reads_them(make_config):
    def reads(**sections) -> bool:
        return encoder_states_read(load_config(make_config(**sections)), 2)

    assert reads()  # a copy student whose frozen encoder is the teacher's whole: it takes the states
    assert not reads(student={"audio_context": "dynamic"})  # its own encoder over the clip
    assert not reads(student={"freeze_encoder": False})  # its encoder trains
    assert not reads(student={"encoder_layers": 1})  # 1 of the teacher's 2 layers: its own encoder
    assert reads(student={"encoder_layers": 2})
    assert reads(student={"freeze_encoder": False}, loss={"hidden_on": "encoder"})  # the encoder loss
    assert not reads(student={"freeze_encoder": False}, loss={"hidden_on": "both", "hidden_loss": "none"})


def test_the_docs_size_table_is_what_the_code_computes():
    script = Path(__file__).resolve().parents[2] / "scripts" / "cache_sizes.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
