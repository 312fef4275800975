"""The teacher pass under torchrun (2 gloo ranks on CPU) equals the 1-process pass: the same cache shards
and the same pseudo-label manifest; a rank killed mid-pass leaves a partial result that a rerun completes,
keeping what was finished."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from geodistill.cli import main
from geodistill.distributed import World
from geodistill.parallel import CRASH_ENV, owned_parts

pytestmark = pytest.mark.slow


def torchrun(args: list[str], crash: str | None = None) -> subprocess.CompletedProcess:
    """``geodistill ARGS`` as 2 CPU ranks; ``crash``: CRASH_ENV's value (that rank SIGKILLs itself)."""
    exe = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(CRASH_ENV, None)
    if crash is not None:
        env[CRASH_ENV] = crash
    cmd = [exe, "--standalone", "--nproc-per-node", "2", "-m", "geodistill.cli", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def shard_contents(folder: Path) -> dict[str, tuple[dict, dict[str, torch.Tensor]]]:
    out = {}
    for path in sorted(folder.glob("shard-*.safetensors")):
        with safe_open(str(path), framework="pt") as f:
            out[path.name] = (f.metadata(), {k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    return out


def test_parts_go_to_ranks_by_index_modulo_world_size():
    assert owned_parts(5, World(0, 2)) == [0, 2, 4] and owned_parts(5, World(1, 2)) == [1, 3]
    assert owned_parts(3, World()) == [0, 1, 2]
    assert sorted(
        owned_parts(7, World(0, 3)) + owned_parts(7, World(1, 3)) + owned_parts(7, World(2, 3))
    ) == list(range(7))


def test_two_rank_cache_equals_one_process_and_a_killed_rank_resumes(tmp_path, tiny_teacher_dir, tiny_data):
    args = ["cache", "--teacher", str(tiny_teacher_dir), "--data", str(tiny_data[0]), "--device", "cpu"]
    args += [
        "--batch-size",
        "2",
        "--shard-size",
        "2",
        "--top-k",
        "8",
        "--full-logits",
        "--cross-kv-layers",
        "1",
    ]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    two = tmp_path / "two"
    # 8 utterances, 4 shards: rank 0 writes shards 0 and 2, rank 1 shards 1 and 3 and is killed after shard 1.
    crashed = torchrun([*args, "--out", str(two)], crash="1:1")
    assert crashed.returncode != 0
    assert json.loads((two / "index.json").read_text())["status"] == "building"
    assert (two / "shard-00001.safetensors").is_file() and not (two / "shard-00003.safetensors").exists()
    kept = (two / "shard-00001.safetensors").stat().st_mtime_ns
    # The parts do not depend on the number of processes: one process may finish what two started.
    shutil.copytree(two, tmp_path / "finished-by-one")
    assert main([*args, "--out", str(tmp_path / "finished-by-one")]) == 0
    done = torchrun([*args, "--out", str(two)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (two / "shard-00001.safetensors").stat().st_mtime_ns == kept  # resumed, not recomputed
    one_index, two_index = (json.loads((d / "index.json").read_text()) for d in (tmp_path / "one", two))
    assert two_index["status"] == "complete" and two_index["n_shards"] == 4
    for key in ("ids", "skipped", "teacher_fingerprint", "data_fingerprint", "prompt", "cross_kv_layers"):
        assert two_index[key] == one_index[key], key
    one = shard_contents(tmp_path / "one")
    for folder in (two, tmp_path / "finished-by-one"):
        other = shard_contents(folder)
        assert list(one) == list(other) == [f"shard-0000{i}.safetensors" for i in range(4)]
        for name, (meta, tensors) in one.items():
            assert other[name][0] == meta, name
            assert tensors.keys() == other[name][1].keys() and "cross_k.1" in tensors
            for key, value in tensors.items():
                assert torch.equal(value, other[name][1][key]), (folder.name, name, key)


def test_two_rank_pseudo_labels_equal_one_process_and_a_killed_rank_resumes(
    tmp_path, tiny_teacher_dir, tiny_data
):
    args = ["data", "pseudo-label", "--teacher", str(tiny_teacher_dir), "--data", str(tiny_data[0])]
    args += ["--device", "cpu", "--batch-size", "2", "--part-size", "2", "--max-new-tokens", "4"]
    args += ["--wer-threshold", "5"]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert main([*args, "--out", str(one)]) == 0
    assert not (tmp_path / "one.jsonl.parts").exists()  # merged, then removed
    crashed = torchrun([*args, "--out", str(two)], crash="0:2")  # rank 0 dies after parts 0 and 2
    assert crashed.returncode != 0 and not two.exists()
    parts = tmp_path / "two.jsonl.parts"
    # Part 2 (rank 0's second) is on disk: mark its transcripts to see that the rerun reuses it.
    lines = [json.loads(line) for line in (parts / "part-00002.jsonl").read_text().splitlines()]
    marked = {row["id"] for row in lines[1:]}
    assert lines[0]["n_rows"] == 2 and len(marked) == 2
    text = "".join(json.dumps(x) + "\n" for x in [lines[0], *({**r, "text": "resumed"} for r in lines[1:])])
    (parts / "part-00002.jsonl").write_text(text)
    done = torchrun([*args, "--out", str(two)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not parts.exists()
    rows_one = [json.loads(line) for line in one.read_text().splitlines()]
    rows_two = [json.loads(line) for line in two.read_text().splitlines()]
    assert [r["id"] for r in rows_two] == [r["id"] for r in rows_one] and len(rows_one) == 8
    for a, b in zip(rows_one, rows_two, strict=True):
        if b["id"] in marked:
            assert b["text"] == "resumed" and b["reference"] == a["reference"]
        else:
            assert b == a
    assert all("teacher_wer" in r and r["reference"] for r in rows_one)
    assert done.stdout.count('"n_in": 8') == 2  # each rank prints rank 0's summary
