"""Issue 28 ("Hardening 2"), items 4, 5, 6, 9, 10, 11, 12a and 12b, reproduced as the issue's attacker did.

Each test is named after its item and asserts the promise: half-written exports and evaluations never
appear (every output is written to a temporary sibling and renamed into place last), one writer per
evaluation folder, I/O errors and out-of-memory are one ``error:`` line naming the file or the key, no
``.tmp`` file is left behind, unreadable folders and symlink loops are bad samples with their true reason,
Optuna prints no traceback of a failed cell, and ``report`` builds what it can without a training history.
"""

from __future__ import annotations

import builtins
import errno
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch

from geodistill.data import BadSamples, load_spec
from geodistill.runlock import hold
from tests import test_hardening_cli
from tests.ablate import conftest as ablate_fixtures
from tests.conftest import make_tiny_whisper
from tests.data.conftest import write_librispeech
from tests.report import conftest as report_fixtures
from tests.test_hardening_cli import assert_one_line_error, cli
from tests.test_hardening_runs import SHORT, assert_last_line_error, checkpoint_step
from tests.train import conftest as train_fixtures
from tests.tune import conftest as tune_fixtures

# The training tests' tiny teacher, manifests and config writer, and the report tests' tiny run (fixtures).
make_config = train_fixtures.make_config
tiny_data = train_fixtures.tiny_data
tiny_teacher_dir = train_fixtures.tiny_teacher_dir
tiny_run = report_fixtures.tiny_run
model_dir = test_hardening_cli.model_dir  # a tiny random Whisper folder
tune_config, ablate_config, ablate_cfg = (  # a tiny ablation's config
    tune_fixtures.tune_config,
    ablate_fixtures.ablate_config,
    ablate_fixtures.ablate_cfg,
)

LOCKS = (".geodistill.lock", ".geodistill.lock.json")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (lock files aside) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in LOCKS
    }


def temp_files(folder: Path) -> list[Path]:
    """Temporary files or folders left under ``folder`` or beside it."""
    here = [p for p in folder.rglob("*") if ".tmp" in p.name] if folder.is_dir() else []
    return here + [p for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}")]


class _FullFile:
    """A file on a full disk: the first write puts a few bytes down, then fails like the kernel does."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[:3])
        raise OSError(errno.ENOSPC, "No space left on device")  # no filename: a write() knows none

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def fill_disk_for(monkeypatch, matches, after: int = 0) -> list[str]:
    """Writes to files whose name ``matches`` fail (a full disk) after ``after`` such files were written,
    whether Python (``open``) or libsndfile (``soundfile.write`` to a path) writes them. Returns the list
    of matching paths opened, in order."""
    real_open, real_sf_write, opened = builtins.open, sf.write, []

    def full(path) -> bool:
        if not isinstance(path, str | os.PathLike) or not matches(Path(path).name):
            return False
        opened.append(str(path))
        return len(opened) > after

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return _FullFile(f) if any(m in mode for m in "wax") and full(file) else f

    def fake_sf_write(file, *args, **kwargs):
        if full(file):
            with real_open(file, "wb") as f:
                f.write(b"fLaC")
            raise sf.LibsndfileError(2)  # libsndfile on a full disk: "System error."
        return real_sf_write(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(sf, "write", fake_sf_write)
    return opened


# 4. exports and evaluations are not atomic


@pytest.mark.parametrize("fmt", ["hf", "ct2"])
def test_item4_interrupted_export_leaves_nothing(capsys, monkeypatch, model_dir, tmp_path, fmt):
    """SIGINT after the weights are written (hf) or mid-conversion (ct2): nothing at --out, and the re-export
    is not refused."""
    from transformers import WhisperProcessor

    import geodistill.students.seq2seq.export as seq2seq_export

    if fmt == "ct2":
        pytest.importorskip("ctranslate2")
    out = tmp_path / f"out-{fmt}"

    def interrupted_processor(self, folder, *args, **kwargs):
        assert (Path(folder) / "model.safetensors").is_file()  # the weights are already on disk
        raise KeyboardInterrupt

    def interrupted_conversion(hf_dir, folder, quantization="float32"):
        folder.mkdir(parents=True, exist_ok=True)  # as CTranslate2's converter does
        (folder / "model.bin").write_bytes(b"partial")
        (folder / "vocabulary.json").write_text("[]")
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        if fmt == "hf":
            m.setattr(WhisperProcessor, "save_pretrained", interrupted_processor)
        else:
            m.setattr(seq2seq_export, "convert_to_ct2", interrupted_conversion)
        rc, _, err = cli(capsys, "export", model_dir, "--format", fmt, "--out", out)
    assert rc == 130, err
    assert not out.exists() or not any(out.iterdir())
    assert not temp_files(out)
    rc, printed, err = cli(capsys, "export", model_dir, "--format", fmt, "--out", out)
    assert rc == 0, err
    assert printed.strip() == str(out) and (out / "README.md").is_file() and not temp_files(out)
    assert (out / ("tokenizer.json" if fmt == "hf" else "model.bin")).is_file()


def _bad_manifest(tiny_data) -> Path:
    """The validation manifest with a missing file first: one skipped sample per evaluation."""
    manifest = tiny_data[1].parent / "with_bad.jsonl"
    bad = json.dumps({"audio_filepath": "missing.wav", "text": "gone"})
    manifest.write_text("\n".join([bad, *tiny_data[1].read_text().splitlines()]) + "\n")
    return manifest


@pytest.fixture(scope="module")
def short_teacher(tmp_path_factory, tiny_processor) -> Path:
    """The training tests' tiny teacher with a 32-token decoder context: each clip decodes 16 tokens at most,
    not 224 (what it writes, not what it says, is what the evaluate tests below look at)."""
    folder = tmp_path_factory.mktemp("short-teacher")
    make_tiny_whisper(d_model=32, layers=2, heads=2, seed=1, text_ctx=32).save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    return folder


def _evaluate(capsys, model: Path, data: Path, out: Path) -> tuple[int, str, str]:
    """``geodistill evaluate`` without the warm-up batch: these tests are about the files, not the timing."""
    args = ("--out", out, "--device", "cpu", "--no-warmup")
    return cli(capsys, "evaluate", "--model", model, "--data", data, *args)


def test_item4_interrupted_evaluate_rerun_keeps_the_old_results(
    capsys, monkeypatch, short_teacher, tiny_data, tmp_path
):
    import geodistill.evaluate.run as run

    out, data = tmp_path / "eval", _bad_manifest(tiny_data)
    rc, _, err = _evaluate(capsys, short_teacher, data, out)
    assert rc == 0, err
    before = snapshot(out)
    assert {"eval.json", "utterances.jsonl", "bad_samples.jsonl"} <= set(before)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # while the rerun loads its data

    monkeypatch.setattr(run, "load_utterances", interrupted)
    rc, _, err = _evaluate(capsys, short_teacher, data, out)
    assert rc == 130, err
    assert snapshot(out) == before and not temp_files(out)  # the previous results, every file of them


# 5. one evaluate per --out


def test_item5_two_evaluates_on_one_out(capsys, short_teacher, tiny_data, tmp_path):
    out = tmp_path / "eval"
    with hold(out, "geodistill evaluate"):  # another evaluate, still running
        rc, _, err = _evaluate(capsys, short_teacher, tiny_data[1], out)
        assert_one_line_error(rc, err, str(out), "in use", f"pid {os.getpid()}", "geodistill evaluate")
    assert not (out / "eval.json").exists()
    rc, _, err = _evaluate(capsys, short_teacher, tiny_data[1], out)  # its turn, once the other is done
    assert rc == 0, err
    assert json.loads((out / "eval.json").read_text())["n_utterances"] == 2


# 6. a full disk during evaluate


def test_item6_full_disk_writes_no_eval_json(capsys, monkeypatch, short_teacher, tiny_data, tmp_path):
    out, data = tmp_path / "eval", _bad_manifest(tiny_data)
    rc, _, err = _evaluate(capsys, short_teacher, data, out)
    assert rc == 0, err
    before = snapshot(out)
    fresh = tmp_path / "fresh"
    with monkeypatch.context() as m:
        fill_disk_for(m, lambda name: "utterances.jsonl" in name)
        rc, _, err = _evaluate(capsys, short_teacher, data, out)  # a rerun into the same --out
        assert_last_line_error(rc, err, str(out / "utterances.jsonl"), "no space left on device")
        assert snapshot(out) == before and not temp_files(out)  # the previous run's files, all intact
        rc, _, err = _evaluate(capsys, short_teacher, data, fresh)  # a new --out
        assert_last_line_error(rc, err, str(fresh / "utterances.jsonl"), "no space left on device")
    assert snapshot(fresh) == {} and not temp_files(fresh)  # no complete-looking eval.json
    with monkeypatch.context() as m:  # bad_samples.jsonl and eval.json are named too
        fill_disk_for(m, lambda name: "bad_samples" in name)
        rc, _, err = _evaluate(capsys, short_teacher, data, fresh)
        assert_last_line_error(rc, err, str(fresh / "bad_samples.jsonl"), "no space left on device")
    assert snapshot(fresh) == {}
    rc, _, err = _evaluate(capsys, short_teacher, data, fresh)  # space freed
    assert rc == 0, err
    assert set(snapshot(fresh)) == {"eval.json", "eval.md", "utterances.jsonl", "bad_samples.jsonl"}


# 9. out of memory


OOM = {
    "cuda": torch.OutOfMemoryError(
        "CUDA out of memory. Tried to allocate 12.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
        "1.25 GiB is free."
    ),
    "cpu": RuntimeError(
        "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: you tried to "
        "allocate 12884901888 bytes. Error code 12 (Cannot allocate memory)"
    ),
}


@pytest.mark.parametrize("device", sorted(OOM))
def test_item9_oom_names_batch_size(capsys, monkeypatch, make_config, device):
    import geodistill.train.loop as loop

    config = make_config("oom", train=SHORT)
    run_dir = config.parent / "oom"
    real, calls = loop.Session.train_step, []

    def oom_at_step_2(self):
        calls.append(1)
        if len(calls) == 2:
            raise OOM[device]
        return real(self)

    monkeypatch.setattr(loop.Session, "train_step", oom_at_step_2)
    rc, _, err = cli(capsys, "train", "--config", config)
    line = assert_last_line_error(rc, err, "ran out of", "train.batch_size=2", "12.00 GiB")
    assert "checkpoint" in line and "intact" in line
    assert checkpoint_step(run_dir) == 1 and not list(run_dir.glob(".checkpoint.pt.tmp-*"))  # untouched


# 10. a full disk during data synth


def test_item10_full_disk_in_synth(capsys, monkeypatch, tmp_path):
    from geodistill.corpus import synth
    from tests.corpus.test_synth import _NoAugment, _Tone

    voices = [v for v in synth.VOICES if v.name in ("flite-slt", "flite-awb", "flite-rms")]
    monkeypatch.setattr(synth, "available_voices", lambda: voices)
    monkeypatch.setattr(synth, "Engines", lambda seed: _Tone())
    monkeypatch.setattr(synth, "augmenter", _NoAugment)
    monkeypatch.setattr(synth, "kjv_verses", list)
    out = tmp_path / "corpus"
    args = ("data", "synth", out, "--hours", "0.0005", "--val-minutes", "0.01")
    with monkeypatch.context() as m:
        opened = fill_disk_for(m, lambda name: name.endswith(".flac.tmp"), after=2)
        rc, _, err = cli(capsys, *args)
    tmp = Path(opened[2])
    third = tmp.with_name(tmp.name.removeprefix(".").removesuffix(".tmp"))  # the file it was to become
    assert_last_line_error(rc, err, str(third), "no space left on device")
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert len(list(out.rglob("*.flac"))) == 2 and not (out / "corpus.json").exists()
    rc, _, err = cli(capsys, *args)  # space freed: the rerun keeps the two files and finishes
    assert rc == 0, err
    assert json.loads((out / "corpus.json").read_text())["synthesised_now"] >= 1
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# 11. an unreadable chapter folder and a symlink loop in a LibriSpeech tree


def test_item11_unreadable_folder_and_symlink_loop(capsys, monkeypatch, tmp_path):
    root = write_librispeech(tmp_path / "ls")
    locked = root / "12" / "3"  # chmod 000 stops everyone but root: the walk is refused here instead
    chapter = root / "11" / "1"
    loop = chapter / "11-1-0002.flac"
    os.symlink(loop.name, loop)  # a link to itself
    with open(chapter / "11-1.trans.txt", "a", encoding="utf-8") as f:
        f.write("11-1-0002 A CLIP BEHIND A LOOP\n")
    os.symlink("ring-b", root / "13" / "ring-a")  # a two-link loop where a chapter folder would be
    os.symlink("ring-a", root / "13" / "ring-b")
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rc, report, err = cli(capsys, "data", "scan", root)
    assert rc == 0, err
    assert "utterances: 3" in report
    assert f"{locked}: folder cannot be read (permission denied)" in report
    assert f"{loop}: symbolic link loop" in report and "file not found" not in report
    assert f"{root / '13' / 'ring-a'}: symbolic link loop" in report
    bad = BadSamples(tmp_path / "bad_samples.jsonl")
    assert len(load_spec(root, bad=bad)) == 3
    rows = [json.loads(x) for x in (tmp_path / "bad_samples.jsonl").read_text().splitlines()]
    reasons = {row["item"]: row["reason"] for row in rows}
    assert reasons[str(locked)].startswith("folder cannot be read (permission denied)")
    assert reasons[str(loop)].startswith("symbolic link loop (too many levels of symbolic links)")
    assert len(rows) == 4  # the locked folder, the looping file and the two links of the ring


# 12a. a failed ablation cell: the tool's own line, no Optuna traceback


def test_item12a_failed_ablate_cell_prints_no_optuna_traceback(capfd, monkeypatch, ablate_config):
    """Through the CLI, on the real stderr (Optuna's own handler writes to the process's stderr)."""
    import geodistill.train.loop as loop
    from geodistill.cli import main

    config = ablate_config("failing", ablate={"run": ["ce"], "seeds": 1})
    run_dir = config.parent / "failing"

    def fails(trial_cfg, **kwargs):
        raise RuntimeError("the cell broke")

    monkeypatch.setattr(loop, "train", fails)
    seen: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = seen.append  # type: ignore[method-assign]
    logging.getLogger("optuna").addHandler(catcher)
    try:
        rc = main(["ablate", "--config", str(config)])
    finally:
        logging.getLogger("optuna").removeHandler(catcher)
    err = capfd.readouterr().err
    assert rc == 0, err
    (failed,) = json.loads((run_dir / "ablation.json").read_text())["failed"]
    error_txt = run_dir / "trial-0" / "error.txt"
    assert "the cell broke" in failed["error"] and "Traceback" in error_txt.read_text()
    assert f"traceback in {error_txt}" in err  # the tool's own line
    assert "Traceback" not in err and not [r for r in seen if r.exc_info]


# 12b. report without training_history.json


def test_item12b_report_without_history_builds_what_it_can(capsys, tiny_run, tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("report", "training_history.json"))
    rc, printed, err = cli(capsys, "report", run, "--n", "2")
    assert rc == 0, err
    index = Path(printed.strip())
    assert index == run / "report" / "index.html" and index.is_file()
    assert "training_history.json" in err  # named on the console ...
    report = json.loads((run / "report" / "report.json").read_text())
    assert [m["file"] for m in report["missing"]] == [str(run / "training_history.json")]  # ... and in it
    assert report["comparison"]["student"] is not None  # the rest is built
    md = (run / "report" / "report.md").read_text()
    assert "training_history.json" in md and "missing" in md
    assert not (run / "report" / "training_curves.png").exists()
