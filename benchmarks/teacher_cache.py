"""Benchmark: the same distillation steps with the teacher online vs read from the teacher cache.

    .venv/bin/python benchmarks/teacher_cache.py --steps 8 --write docs/benchmarks.md

Teacher: the embedded ``base``; student: its layer copy with 2 decoder layers (teacher layers 0 and 5),
frozen (shared) encoder, LoRA on every decoder linear that acts on text (``decoder-text-side``: the
cross-attention k/v projections stay frozen, so their keys/values are the teacher's); batch 4; seed loss
settings. Data: a small manifest of real speech (the alsa-utils voice prompts, concatenated into 4-9 s
utterances with their transcripts) or, without alsa-utils, synthetic tones. One cache (top-64 +
full-vocabulary log-probs + logsumexp at T = 1 and 2 + the cross-attention keys/values of teacher
layers 0 and 5, fp16) is built first and timed; then each mode trains in its own process from the same
seed (so peak RSS is per mode): ``online`` (the teacher runs every step and hands over its encoder
states and those layers' cross-attention keys/values), ``cache-full`` (full-vocab KL), ``cache-topk``
(top-64 KL, logits hidden from the loss, logsumexp at the run's T = 2: exact bucket KL),
``cache-topk-lse1`` (the same with only the T = 1 logsumexp, which the loss must extrapolate to T = 2),
``cache-topk-own-kv`` (cache-topk with the cached keys/values hidden: the student projects the encoder
states itself, as with LoRA on the cross-attention k/v or ``teacher_cache_cross_kv: false``). Reported:
median step time (first step excluded), its split into data / teacher / student, peak RSS, and the max
abs difference of every logged loss part against the online run, step by step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from geodistill.markdown import replace_section as write_section

ALSA = Path("/usr/share/sounds/alsa")
CLIPS = {
    "Front_Center": "Front center",
    "Front_Left": "Front left",
    "Front_Right": "Front right",
    "Rear_Center": "Rear center",
    "Rear_Left": "Rear left",
    "Rear_Right": "Rear right",
    "Side_Left": "Side left",
    "Side_Right": "Side right",
}
PARTS = ("total", "ce", "kl", "hidden_dec", "grad_norm")
MARK_START, MARK_END = "<!-- teacher_cache:start -->", "<!-- teacher_cache:end -->"


def write_manifest(folder: Path, n: int, seed: int = 0) -> Path:
    """n utterances of 3-6 concatenated voice prompts (real speech) with their transcripts, 16 kHz."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    have_alsa = all((ALSA / f"{name}.wav").is_file() for name in CLIPS)
    rows = []
    for i in range(n):
        names = list(rng.choice(list(CLIPS), size=3 + i % 4))
        if have_alsa:
            import soxr

            parts = []
            for name in names:
                audio, sr = sf.read(ALSA / f"{name}.wav", dtype="float32")
                parts += [soxr.resample(audio, sr, 16000), np.zeros(3200, np.float32)]
            audio = np.concatenate(parts)
        else:  # no recordings: one tone per "word", enough to time the loop (not to learn from)
            t = np.arange(int(16000 * 1.4 * len(names))) / 16000
            audio = (0.2 * np.sin(2 * np.pi * (180 + 30 * i) * t)).astype(np.float32)
        sf.write(folder / f"utt{i}.wav", audio, 16000)
        text = ". ".join(CLIPS[name] for name in names) + "."
        rows.append({"audio_filepath": f"utt{i}.wav", "text": text, "speaker": f"s{i % 4}"})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def write_config(work: Path, manifest: Path, steps: int, teacher: str = "base") -> Path:
    cfg = {
        "teacher": teacher,
        "student": {
            "init": "copy",
            "decoder_layers": 2,
            "freeze_encoder": True,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "targets": "decoder-text-side"},
        },
        "teacher_cache": str(work / "cache"),  # the cache the children read (online: none)
        "teacher_cache_cross_kv": True,
        "data": {"train": str(manifest), "val": str(manifest), "val_limit": 1, "language": "en"},
        "train": {
            "max_steps": steps,
            "warmup_steps": 1,
            "batch_size": 4,
            "eval_every": 0,
            "save_every": 0,
            "log_every": 1,
            "num_workers": 0,
            "device": "cpu",
            "seed": 0,
        },
        "run_dir": str(work / "run"),
    }
    path = work / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class Timed:
    """Wraps a callable (the teacher) or an iterator (the batch stream), summing the seconds spent in it."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def _timed(self, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds += time.perf_counter() - t

    def __call__(self, batch):
        return self._timed(self.inner, batch)

    def __next__(self):
        return self._timed(next, self.inner)


class Hiding:
    """The cached teacher without its full logits (the loss then takes the top-k KL) and, with
    ``own_kv``, without its cross-attention keys/values (the student then computes its own)."""

    def __init__(self, reader, own_kv: bool = False):
        self.reader, self.own_kv = reader, own_kv
        kept = () if own_kv else reader.offer.cross_kv_layers
        self.offer = dataclasses.replace(reader.offer, cross_kv_layers=kept)

    def __getattr__(self, name: str):  # index, encoder_pool, ...: as the reader's
        return getattr(self.reader, name)

    def __call__(self, batch):
        out = self.reader(batch)
        out.logits = None
        if self.own_kv:
            out.cross_kv = None
        return out


def child(mode: str, config: Path, cache: Path, steps: int) -> dict:
    """Train ``steps`` steps in this process; step times, their split, logged parts, peak RSS."""
    from transformers import get_cosine_schedule_with_warmup

    from geodistill.config import load_config
    from geodistill.decoding.speed import process_peak_rss_mb
    from geodistill.losses import DistillationLoss
    from geodistill.teacher.cache import CachedTeacher
    from geodistill.train.batches import BatchStream
    from geodistill.train.loop import Session, TrainState, make_optimizer
    from geodistill.train.setup import build_run
    from geodistill.train.trackers import Trackers

    cfg = load_config(config)
    provider = None
    if mode == "online":  # the teacher runs every step: no cache
        cfg = dataclasses.replace(cfg, teacher_cache=None)
    else:
        expect = {"data": cfg.data.train, "language": cfg.data.language, "normalise_text": False}
        temperature = None if mode == "cache-topk-lse1" else cfg.loss.temperature
        reader = CachedTeacher(cache, expect=expect, temperature=temperature)
        provider = reader if mode == "cache-full" else Hiding(reader, own_kv=mode == "cache-topk-own-kv")
    run = build_run(cfg, teacher_provider=provider)
    run.teacher = teacher = Timed(run.teacher)
    opt = make_optimizer(run.student.trainable, cfg.train.lr, cfg.train.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, cfg.train.warmup_steps, cfg.train.max_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    loss_fn = DistillationLoss(cfg.loss)
    stream = Timed(BatchStream(run.train_set, run.collate, cfg.train.batch_size, cfg.train.seed))
    session = Session(run, TrainState(), stream, opt, sched, scaler, loss_fn, Trackers([]))
    run.student.trainable.train()
    load_before = os.getloadavg()[0]
    rows = []
    for step in range(steps):
        data0, teacher0, t0 = stream.seconds, teacher.seconds, time.perf_counter()
        session.state.step = step
        values, _, ok = session.train_step()
        total = time.perf_counter() - t0
        data, teach = stream.seconds - data0, teacher.seconds - teacher0
        rows.append(
            {
                "step": step,
                "seconds": total,
                "data": data,
                "teacher": teach,
                "student": total - data - teach,
                "ok": ok,
                **{p: values.get(p) for p in PARTS},
            }
        )
    return {
        "mode": mode,
        "shares_encoder": run.student.shares_encoder,
        "cross_kv": {str(i): j for i, j in run.student.cross_kv.items()},
        "steps": rows,
        "peak_rss_mb": process_peak_rss_mb(),
        "threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def _median_seconds(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def phases(config: Path, cache: Path, steps: int) -> dict:
    """The cached top-k step cut into phases (what is left once the teacher is cached), medians in s."""
    from geodistill.config import load_config
    from geodistill.losses import DistillationLoss
    from geodistill.teacher.cache import CachedTeacher
    from geodistill.train.batches import BatchStream
    from geodistill.train.loop import compute_loss, make_optimizer
    from geodistill.train.setup import build_run

    cfg = load_config(config)
    run = build_run(cfg, teacher_provider=Hiding(CachedTeacher(cache, temperature=cfg.loss.temperature)))
    opt = make_optimizer(run.student.trainable, cfg.train.lr, cfg.train.weight_decay)
    loss_fn = DistillationLoss(cfg.loss)
    stream = BatchStream(run.train_set, run.collate, cfg.train.batch_size, cfg.train.seed)
    run.student.trainable.train()
    marks: dict[str, list[float]] = {}
    t = [0.0]

    def mark(name: str) -> None:
        now = time.perf_counter()
        marks.setdefault(name, []).append(now - t[0])
        t[0] = now

    # The loop's own compute_loss, cut by hooks: after the lookup, and around the LM head (its last module).
    lookup = run.teacher
    run.teacher = lambda batch: [lookup(batch), mark("cache lookup")][0]
    run.student.whisper.proj_out.register_forward_pre_hook(
        lambda *_: mark("student decoder forward (+ fp16 -> fp32 of the cached encoder states and K/V)")
    )
    run.student.whisper.proj_out.register_forward_hook(lambda *_: mark("LM head (label positions only)"))
    for step in range(steps):
        t[0] = time.perf_counter()
        batch = next(stream)
        mark("data")
        total, _ = compute_loss(run, loss_fn, batch, step)
        mark("projector + loss (CE + top-k KL + geodesic)")
        total.backward()
        mark("backward")
        params = [p for g in opt.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, cfg.train.clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        mark("clip + AdamW")
    out = {name: statistics.median(v[1:]) for name, v in marks.items()}
    enc = lookup(batch).encoder_hidden.float()
    layers = run.student.whisper.model.decoder.layers
    with torch.no_grad():  # what the cached keys/values spare: the student's own K/V projections
        proj = [m for layer in layers for m in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)]
        out["not run: the student's cross-attention K/V projections (read from the cache instead)"] = (
            _median_seconds(lambda: [m(enc) for m in proj])
        )
    return {
        "phases": out,
        "cross_kv": {str(i): j for i, j in run.student.cross_kv.items()},
        "tokens": int(batch["decoder_input_ids"].numel()),
        "label_tokens": int((batch["labels"] != -100).sum()),
        "load": os.getloadavg()[0],
    }


def run_child(mode: str, args, config: Path, cache: Path) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        mode,
        "--config",
        str(config),
        "--cache",
        str(cache),
        "--steps",
        str(args.steps),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def merge_rounds(runs: list[dict]) -> dict:
    """One mode's rounds as one result: steps concatenated (each round's first step marked warm-up)."""
    steps = [{**row, "warmup": row["step"] == 0} for r in runs for row in r["steps"]]
    return {
        **runs[0],
        "steps": steps,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "load_before": [r["load_before"] for r in runs],
        "load_after": [r["load_after"] for r in runs],
    }


def summary(result: dict, online: dict) -> dict:
    rows = [r for r in result["steps"] if not r["warmup"]]  # a first step pays one-off costs (lazy init)
    med = {k: statistics.median(r[k] for r in rows) for k in ("seconds", "data", "teacher", "student")}
    diffs = {
        p: max(
            abs(a[p] - b[p])
            for a, b in zip(result["steps"], online["steps"], strict=True)
            if a[p] is not None and b[p] is not None
        )
        for p in PARTS
    }
    return {"median": med, "max_abs_diff": diffs}


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--teacher", default="base", help="the small mode (make test) uses tiny.en")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--utterances", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2, help="each mode runs this many times, interleaved")
    p.add_argument("--work", default="runs/bench-teacher-cache")
    p.add_argument("--write", default=None, help="markdown file whose teacher-cache section is replaced")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--config", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.child == "phases":
        print(json.dumps(phases(Path(a.config), Path(a.cache), a.steps)))
        return
    if a.child:
        print(json.dumps(child(a.child, Path(a.config), Path(a.cache), a.steps)))
        return
    from geodistill.config import load_config
    from geodistill.models import load_whisper
    from geodistill.students.seq2seq.sharing import cross_kv_plan
    from geodistill.teacher.cache import BuildOptions, CacheOptions, build_cache

    work = Path(a.work).resolve()
    manifest = write_manifest(work / "data", a.utterances)
    config = write_config(work, manifest, a.steps, a.teacher)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)  # time a full build, not the reuse of an earlier one
    t0 = time.perf_counter()
    teacher = load_whisper(a.teacher, device="cpu")
    kv_layers = tuple(sorted(cross_kv_plan(load_config(config), teacher[0].config).values()))
    options = CacheOptions(  # the student shares the frozen encoder: it reads the cached encoder states
        top_k=64, full_logits=True, store_encoder=True, temperatures=(2.0,), cross_kv_layers=kv_layers
    )
    build_cache(
        teacher, str(manifest), cache, options, BuildOptions(batch_size=4, device="cpu", language="en")
    )
    build_seconds = time.perf_counter() - t0
    del teacher
    modes = ("online", "cache-full", "cache-topk", "cache-topk-lse1", "cache-topk-own-kv")
    rounds: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(a.rounds):  # interleaved, so a change in the machine's load hits every mode alike
        for m in modes:
            rounds[m].append(run_child(m, a, config, cache))
    results = {m: merge_rounds(rounds[m]) for m in modes}
    report = {
        "phases": run_child("phases", a, config, cache),
        "machine": machine(),
        "build_seconds": build_seconds,
        "cross_kv_layers": list(kv_layers),
        "cache_mb": _size_mb(cache),
        "args": vars(a),
        "results": results,
        "summary": {m: summary(r, results["online"]) for m, r in results.items()},
    }
    (work / "result.json").write_text(json.dumps(report, indent=1))
    text = markdown(report, " ".join([".venv/bin/python", "benchmarks/teacher_cache.py", *sys.argv[1:]]))
    print(text)
    if a.write:
        replace_section(Path(a.write), text)


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def markdown(report: dict, command: str) -> str:
    m, s, r = report["machine"], report["summary"], report["results"]
    online = s["online"]["median"]["seconds"]
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {m['cpu']}, nproc {m['nproc']}, torch {m['torch']}, "
        f"{r['online']['threads']} torch threads, {time.strftime('%Y-%m-%d')}.  ",
        f"Cache build ({report['args']['utterances']} utterances, top-64 + full vocab + cross-attention "
        f"K/V of teacher layers {report['cross_kv_layers']}, fp16): "
        f"{report['build_seconds']:.1f} s, {report['cache_mb']:.1f} MB on disk.",
        "",
        "| mode | median step s | data s | teacher s | student s | speed-up | peak RSS MB | "
        "load avg before/after (per round) | mean KL | max abs diff vs online (total, ce, kl, hidden_dec, "
        "grad_norm) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, res in r.items():
        med, diff = s[mode]["median"], s[mode]["max_abs_diff"]
        lines.append(
            f"| {mode} | {med['seconds']:.3f} | {med['data']:.3f} | {med['teacher']:.3f} "
            f"| {med['student']:.3f} "
            f"| {online / med['seconds']:.1f}x | {res['peak_rss_mb']:.0f} | {_loads(res)} "
            f"| {statistics.mean(row['kl'] for row in res['steps']):.3f} | "
            + ", ".join(f"{diff[p]:.2e}" for p in PARTS)
            + " |"
        )
    ph = report["phases"]
    lines += [
        "",
        f"Where a cached top-k step's time goes (medians, load average {ph['load']:.1f} after; last batch: "
        f"{ph['label_tokens']} label positions of {ph['tokens']} decoder positions):",
        "",
        "| phase | s |",
        "|---|---|",
    ]
    lines += [f"| {name} | {sec:.3f} |" for name, sec in ph["phases"].items()]
    lines.append("")
    lines.append(
        f"shares_encoder: {r['online']['shares_encoder']}; student layer -> teacher layer whose "
        f"cross-attention K/V it reuses: {r['online']['cross_kv']} (every other mode), "
        f"{r['cache-topk-own-kv']['cross_kv']} (cache-topk-own-kv); steps timed: "
        f"{sum(not row['warmup'] for row in r['online']['steps'])} per mode ({report['args']['rounds']} "
        f"interleaved rounds, each round's first step excluded). Full results: `{report['args']['work']}"
        "/result.json`."
    )
    return "\n".join(lines)


def _loads(res: dict) -> str:
    return ", ".join(f"{b:.1f}/{a:.1f}" for b, a in zip(res["load_before"], res["load_after"], strict=True))


def replace_section(path: Path, text: str) -> None:
    """Put ``text`` between this benchmark's markers in ``path``."""
    write_section(path, text, MARK_START, MARK_END)


if __name__ == "__main__":
    main()
