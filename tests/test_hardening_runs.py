"""Issue 15, failures 9-12 and 14 (+ cache progress), reproduced through the CLI: full disks and bad output
paths, two processes on one folder, a killed cache build, a mistyped tuning storage, stale state on reruns.

Each test drives ``geodistill.cli.main`` the way the issue's attacker did and asserts the promise: exit 2
with one ``error:`` line naming the path and the reason (no traceback without --debug), and nothing lost
(the previous checkpoint intact, no temp files left, other processes' folders untouched).
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

import geodistill.teacher.cache.build as cache_build
import geodistill.teacher.cache.format as fmt
from geodistill.runlock import HOLDER, hold
from geodistill.teacher.cache import CachedTeacher, read_index
from tests.test_hardening_cli import assert_one_line_error, cli
from tests.train import conftest as train_fixtures

# The training tests' tiny teacher, manifests and config writer (fixtures).
make_config = train_fixtures.make_config
tiny_data = train_fixtures.tiny_data
tiny_teacher_dir = train_fixtures.tiny_teacher_dir

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"max_steps": 2, "eval_every": 0, "save_every": 1, "grad_accum": 1}  # two steps, two checkpoints


def assert_last_line_error(rc: int, err: str, *needles: str) -> str:
    """Exit 2, no traceback, and exactly one ``error:`` line, the last one (progress logs may precede it)."""
    lines = err.strip().splitlines()
    assert rc == 2, err
    assert "Traceback" not in err, err
    assert [line for line in lines if line.startswith("error: ")] == lines[-1:], err
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


def checkpoint_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]["step"]


# 9. disk full / bad output paths


def test_disk_full_during_a_checkpoint_keeps_the_previous_one_and_no_temp(make_config, monkeypatch, capsys):
    config = make_config("full", train=SHORT)
    real_save, calls = torch.save, []

    def fill_disk(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the step-2 checkpoint: half written, then the disk is full
            f.write(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fill_disk)
    rc, _, err = cli(capsys, "train", "--config", config)
    run_dir = config.parent / "full"
    assert_last_line_error(rc, err, str(run_dir / "checkpoint.pt"), "no space left", "previous checkpoint")
    assert checkpoint_step(run_dir) == 1  # the step-1 checkpoint, untouched
    assert not list(run_dir.glob(".checkpoint.pt.tmp-*"))
    monkeypatch.setattr(torch, "save", real_save)  # space freed: the rerun resumes and finishes
    rc, _, err = cli(capsys, "train", "--config", config)
    assert rc == 0, err
    assert "resumed from" in err and checkpoint_step(run_dir) == 2


def test_disk_full_saving_a_student_removes_its_temp_folder(make_config, monkeypatch, capsys):
    from transformers import PreTrainedModel

    config = make_config("full_student", train=SHORT)
    real = PreTrainedModel.save_pretrained

    def fill_disk(self, folder, *args, **kwargs):
        if ".adapter_final.tmp" in str(folder):  # safetensors reports a full disk in its message only
            (Path(folder) / "model.safetensors").write_bytes(b"partial")
            raise SafetensorError(
                'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                'left on device" })'
            )
        return real(self, folder, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", fill_disk)
    rc, _, err = cli(capsys, "train", "--config", config)
    run_dir = config.parent / "full_student"
    assert_last_line_error(rc, err, str(run_dir / "adapter_final"), "no space left")
    assert not (run_dir / ".adapter_final.tmp").exists() and not (run_dir / "adapter_final").exists()
    assert (run_dir / "best" / "config.json").is_file() and checkpoint_step(run_dir) == 2  # nothing lost
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", real)
    rc, _, err = cli(capsys, "train", "--config", config)  # the rerun only writes the final student
    assert rc == 0, err
    assert (run_dir / "adapter_final" / "geodistill.json").is_file()


@pytest.fixture
def small_disk(tmp_path):
    """A real 512 KiB tmpfs (skipped where mounting is not allowed: not root, no CAP_SYS_ADMIN)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_real_full_disk_keeps_the_checkpoint_and_names_the_path(
    small_disk, capsys, tiny_teacher_dir, tiny_data
):
    from geodistill.train.checkpoint import load_checkpoint, save_checkpoint

    path = small_disk / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(1000)})
    with pytest.raises(OSError, match=r"\(no space left on device\); the previous checkpoint is intact"):
        save_checkpoint(path, {"step": 2, "w": torch.zeros(1_000_000)})  # 4 MB on a 512 KiB disk
    assert load_checkpoint(path)["step"] == 1 and sorted(p.name for p in small_disk.iterdir()) == [path.name]
    rc, err = _cache(
        capsys, tiny_teacher_dir, tiny_data[0], small_disk / "cache"
    )  # the tokenizer alone: 2 MB; refused on the estimate, before a byte is written
    assert_last_line_error(rc, err, str(small_disk / "cache"), "the teacher cache needs about", "free")
    assert not (small_disk / "cache" / "index.json").exists()


def test_output_paths_through_a_file_are_one_line_errors(make_config, tiny_teacher_dir, tiny_data, capsys):
    afile = make_config("x").parent / "afile"
    afile.write_text("mine")
    rc, _, err = cli(
        capsys, "evaluate", "--model", tiny_teacher_dir, "--data", tiny_data[1], "--out", afile / "sub"
    )
    assert_one_line_error(rc, err, str(afile / "sub"), f"{afile} is a file")
    rc, _, err = cli(capsys, "train", "--config", make_config("y"), f"run_dir={afile / 'sub'}")
    assert_one_line_error(rc, err, str(afile / "sub"), "run_dir", "is a file")
    rc, _, err = cli(capsys, "cache", "--teacher", tiny_teacher_dir, "--data", tiny_data[1], "--out", afile)
    assert_one_line_error(rc, err, str(afile), "cache", "is a file")
    assert afile.read_text() == "mine"


def test_a_write_the_disk_refuses_elsewhere_is_one_line(make_config, monkeypatch, capsys):
    """Any other write that runs out of space (here the run's config record) is one line naming the file."""
    import geodistill.train.loop as loop

    def full(cfg, run_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / "training_config.json"))

    monkeypatch.setattr(loop, "write_run_config", full)
    config = make_config("cfgfull", train=SHORT)
    rc, _, err = cli(capsys, "train", "--config", config)
    assert_last_line_error(rc, err, "training_config.json", "no space left on device")


# 10. one process per run folder, cache folder and study folder


def _hold_in_child(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder`` (it prints "held" once it does), as a second `geodistill` would."""
    code = (
        "import sys, time\nfrom geodistill.runlock import hold\n"
        f"with hold({str(folder)!r}, 'geodistill train'):\n"
        "    print('held', flush=True)\n    time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_train_on_a_held_run_dir_is_refused_then_a_killed_holder_does_not_block(make_config, capsys):
    config = make_config("locked", train={**SHORT, "max_steps": 1})
    run_dir = config.parent / "locked"
    child = _hold_in_child(run_dir)
    try:
        rc, _, err = cli(capsys, "train", "--config", config, "train.lr=1e-3")
        assert_one_line_error(rc, err, str(run_dir), f"pid {child.pid}", socket.gethostname(), "in use")
        assert not (run_dir / "training_config.json").exists()  # the refused run wrote nothing
    finally:
        child.kill()  # kill -9: the lock dies with it, its record (naming a dead pid) stays
        child.wait()
    assert str(child.pid) in (run_dir / HOLDER).read_text()
    rc, _, err = cli(capsys, "train", "--config", config)
    assert rc == 0, err
    assert not (run_dir / HOLDER).exists()  # released at the end of the run


def test_cache_and_tune_folders_are_held_too(make_config, tiny_teacher_dir, tiny_data, capsys):
    pytest.importorskip("optuna")
    cache_dir, study_dir = make_config("c").parent / "cache", make_config("c").parent / "study"
    with hold(cache_dir, "geodistill cache"), hold(study_dir, "geodistill tune"):
        rc, _, err = cli(
            capsys, "cache", "--teacher", tiny_teacher_dir, "--data", tiny_data[1], "--out", cache_dir
        )
        assert_one_line_error(rc, err, str(cache_dir), f"pid {os.getpid()}", "geodistill cache")
        config = tune_config(make_config("t", run_dir=str(study_dir)))
        rc, _, err = cli(capsys, "tune", "--config", config, "--n-trials", "1")
        assert_one_line_error(rc, err, str(study_dir), f"pid {os.getpid()}", "geodistill tune")
    assert not (cache_dir / "index.json").exists() and not (study_dir / "study.json").exists()


# 11 and 14: a cache left by a kill, or damaged later, is repaired by the next `geodistill cache`


def _cache(capsys, teacher: Path, data: Path, out: Path, *extra: str) -> tuple[int, str]:
    rc, _, err = cli(
        capsys,
        "cache",
        "--teacher",
        teacher,
        "--data",
        data,
        "--out",
        out,
        "--device",
        "cpu",
        *extra,
    )
    return rc, err


@pytest.mark.parametrize("status", ["building", "complete"])
def test_an_empty_processor_folder_is_rebuilt_not_trusted(
    tiny_teacher_dir, tiny_data, tmp_path, capsys, status
):
    """The kill window of the old order (index written, processor/ not yet): the rerun must repair it,
    whether the index still says "building" or a rerun already marked it complete."""
    out = tmp_path / "cache"
    rc, err = _cache(capsys, tiny_teacher_dir, tiny_data[1], out)
    assert rc == 0, err
    for f in (out / "processor").iterdir():
        f.unlink()
    index = read_index(out)
    (out / "index.json").write_text(json.dumps({**index, "status": status}))
    rc, err = _cache(capsys, tiny_teacher_dir, tiny_data[1], out)
    assert rc == 0, err
    assert read_index(out)["status"] == "complete"
    from transformers import WhisperProcessor

    assert WhisperProcessor.from_pretrained(out / "processor").tokenizer.pad_token_id is not None


def test_the_index_is_marked_complete_only_after_every_part(
    tiny_teacher_dir, tiny_data, tmp_path, monkeypatch, capsys
):
    """A kill (here: an exception) while the last shard is written leaves an index that is not complete."""
    out = tmp_path / "cache"
    real, calls = cache_build.write_shard, []

    def killed_at_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill: nothing after this point runs
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_build, "write_shard", killed_at_second)
    rc, err = _cache(capsys, tiny_teacher_dir, tiny_data[0], out, "--shard-size", "3")
    assert rc == 130
    assert read_index(out)["status"] == "building" and (out / "processor" / "tokenizer_config.json").is_file()
    monkeypatch.setattr(cache_build, "write_shard", real)
    rc, err = _cache(capsys, tiny_teacher_dir, tiny_data[0], out, "--shard-size", "3")
    assert rc == 0, err
    assert "resuming: 1 of 3 shards done" in err
    assert not re.search(r"teacher cache: +\d+%\|", err)  # no progress bar when stderr is not a terminal
    assert read_index(out)["status"] == "complete" and len(CachedTeacher(out)) == 8


def test_a_full_disk_while_writing_a_shard_is_one_line_and_the_rerun_resumes(
    tiny_teacher_dir, tiny_data, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "cache"
    real, calls = fmt.save_file, []

    def fill_disk(tensors, filename, metadata=None):
        calls.append(1)
        if len(calls) == 3:
            Path(filename).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(tensors, filename, metadata=metadata)

    monkeypatch.setattr(fmt, "save_file", fill_disk)
    rc, err = _cache(capsys, tiny_teacher_dir, tiny_data[0], out, "--shard-size", "3")
    assert_last_line_error(rc, err, str(out / "shard-00002.safetensors"), "no space left on device")
    assert not list(out.glob(".shard-*.tmp"))
    monkeypatch.setattr(fmt, "save_file", real)
    rc, err = _cache(capsys, tiny_teacher_dir, tiny_data[0], out, "--shard-size", "3")
    assert rc == 0, err
    assert "resuming: 2 of 3 shards done" in err


def test_a_corrupt_shard_of_a_complete_cache_is_rebuilt(tiny_teacher_dir, tiny_data, tmp_path, capsys):
    out = tmp_path / "cache"
    assert _cache(capsys, tiny_teacher_dir, tiny_data[0], out, "--shard-size", "3")[0] == 0
    good = {k: v.clone() for k, v in load_file(out / "shard-00001.safetensors").items()}  # off the mmap
    whole = (out / "shard-00001.safetensors").read_bytes()
    (out / "shard-00001.safetensors").write_bytes(whole[: len(whole) // 2])  # truncated on disk
    untouched = (out / "shard-00000.safetensors").stat().st_mtime_ns
    time.sleep(0.01)
    rc, err = _cache(capsys, tiny_teacher_dir, tiny_data[0], out, "--shard-size", "3")
    assert rc == 0, err
    assert "damaged, rebuilding" in err and "shard-00001.safetensors" in err and "processor" not in err
    again = load_file(out / "shard-00001.safetensors")  # the same teacher, the same tensors
    assert again.keys() == good.keys() and all(torch.equal(again[k], good[k]) for k in good)
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == untouched  # good shards are kept
    assert read_index(out)["status"] == "complete"
    rc, err = _cache(capsys, tiny_teacher_dir, tiny_data[0], out, "--shard-size", "3")
    assert rc == 0 and "damaged" not in err  # whole again: a no-op


# 12. tune opens the storage before it claims the study folder


def tune_config(config: Path) -> Path:
    """``config`` with a one-trial, one-step study over train.lr."""
    cfg = yaml.safe_load(config.read_text())
    space = {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-3}}
    cfg["tune"] = {"n_trials": 1, "steps": 1, "space": space, "pruner_warmup_steps": 0}
    config.write_text(yaml.safe_dump(cfg))
    return config


def test_a_mistyped_storage_does_not_claim_the_study_folder(make_config, tmp_path, capsys):
    pytest.importorskip("optuna")
    study = tmp_path / "study"
    config = tune_config(make_config("tune", run_dir=str(study), train=SHORT))
    rc, _, err = cli(
        capsys, "tune", "--config", config, "--storage", "postgresql://tuner:hunter2@db:54x2/optuna"
    )
    line = assert_one_line_error(rc, err, "port '54x2' is not a number", "tuner:***@db:54x2")
    assert "hunter2" not in line
    rc, _, err = cli(
        capsys, "tune", "--config", config, "--storage", "postgresql://tuner:hunter2@127.0.0.1:9/optuna"
    )
    assert rc == 2 and "cannot open it" in err and "hunter2" not in err
    assert not (study / "study.json").exists()
    rc, out, err = cli(capsys, "tune", "--config", config, "--storage", f"sqlite:///{tmp_path / 'fixed.db'}")
    assert rc == 0, err  # the corrected command is not told to "use another run_dir"
    assert json.loads((study / "study.json").read_text())["storage"] == f"sqlite:///{tmp_path / 'fixed.db'}"


# 14. evaluate reruns into the same --out


def test_rerunning_evaluate_keeps_bad_samples_in_step_with_eval_json(
    tiny_teacher_dir, tiny_data, tmp_path, capsys
):
    rows = tiny_data[1].read_text().splitlines()
    manifest = tiny_data[1].parent / "with_bad.jsonl"
    bad = json.dumps({"audio_filepath": "missing.wav", "text": "gone"})
    manifest.write_text("\n".join([bad, *rows]) + "\n")
    out = tmp_path / "eval"
    for _ in range(2):
        rc, _, err = cli(
            capsys,
            "evaluate",
            "--model",
            tiny_teacher_dir,
            "--data",
            manifest,
            "--out",
            out,
            "--device",
            "cpu",
            "--limit",
            "1",
        )
        assert rc == 0, err
    result = json.loads((out / "eval.json").read_text())
    lines = (out / "bad_samples.jsonl").read_text().splitlines()
    assert result["n_skipped"] == len(lines) == 1 and "missing.wav" in lines[0]
