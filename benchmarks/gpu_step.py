"""Benchmark: a distillation step's time and peak memory, large-v2-shaped teacher -> student, random weights.

    .venv/bin/python benchmarks/gpu_step.py --write docs/benchmarks.md            # CUDA: full size
    .venv/bin/python benchmarks/gpu_step.py --size tiny --device cpu              # the code path, in seconds

Teacher: a Whisper with large-v2's shape (d_model 1280, 32 + 32 layers, 20 heads, FFN 5120, vocabulary 51865,
80 mel bins) and random weights, fp16 on CUDA; students: its layer copy with 2 decoder layers (the
``distil-large-v2`` preset: frozen shared encoder, LoRA r 32 on ``decoder-text-side``) and a small-shaped
Whisper (d_model 768, 12 + 12 layers) with random weights (``init: pretrained``, 2 decoder layers kept).
``--size tiny`` shrinks every width and depth (not the vocabulary) so CPU runs take seconds. Each row changes
one thing against the baseline (online teacher on the training device, fp16 + GradScaler on CUDA, no
gradient checkpointing, the middle batch size, LoRA, copy student): teacher cache (the teacher's outputs for
the timed batches computed beforehand and held in CPU memory, as a cache reader hands them over), bf16,
gradient checkpointing, the other batch sizes, the full decoder trained instead of LoRA (``lora.r: 0``),
the teacher on the CPU, the small-shaped student. Three more rows take a shipped preset's student, loss,
batch size, precision and teacher source as they are (``preset distil-large-v2``, ``preset thesis``,
``preset distil-large-v3``: the step times docs/scale.md plans with). Every row runs the training loop's own
``Session.train_step`` (``compute_loss``, AMP, GradScaler, clipping, AdamW) on a run from ``build_run``.
Reported: median step time (after untimed warm-up steps, up to the first one applied), peak memory (CUDA:
max allocated and reserved since the row's steps began; CPU: peak RSS since then). Random weights make
the losses meaningless: the checks are only that they are finite and that the steps change the trainable
weights (a row failing them fails the benchmark, exit 1, after the table is written).

Then the teacher's two passes over data, in its precision (fp16 on CUDA) on 30-s inputs: the teacher-forced
forward a cache build runs (``forward_states``, the prompt + text positions of an average utterance) and
greedy generation of that many text tokens, as pseudo-labelling runs (forced to the same length: random
weights would stop anywhere). Reported: median seconds a batch and utterances a second.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import itertools
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from geodistill.config import load_config, read_yaml
from geodistill.decoding.speed import cpu_name
from geodistill.markdown import replace_section as write_section
from geodistill.teacher.cache.estimate import PROMPT_TOKENS, TOKENS_PER_SECOND, UTTERANCE_SECONDS

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "tests" / "fixtures" / "tiny_en" / "tokenizer.json"  # the real tiny.en tokenizer, vendored
MARK_START, MARK_END = "<!-- gpu_step:start -->", "<!-- gpu_step:end -->"
# (d_model, encoder layers, decoder layers, heads, ffn): Whisper's published shapes, and their tiny stand-ins.
SHAPES = {
    "full": {"teacher": (1280, 32, 32, 20, 5120), "small": (768, 12, 12, 12, 3072)},
    "tiny": {"teacher": (64, 4, 4, 2, 128), "small": (48, 2, 2, 2, 96)},
}
VOCAB = 51865
MAX_WARMUP = 8  # untimed steps at most, until one is applied (fp16's GradScaler starts at 2^16 and halves)
PRESETS = ("distil-large-v2", "thesis", "distil-large-v3")  # a row each, as shipped: docs/scale.md's plans
NEW_TOKENS = round(TOKENS_PER_SECOND * UTTERANCE_SECONDS)  # 44: an average utterance's text tokens


@dataclasses.dataclass(frozen=True)
class Row:
    """One measured configuration: what it changes against the baseline."""

    name: str
    teacher: str = "online"  # online | cache
    amp: str = "fp16"  # fp16 | bf16 (CUDA); CPU always trains fp32
    checkpointing: bool = False
    batch: int | None = None  # None: the baseline batch size
    training: str = "lora"  # lora | full decoder
    teacher_device: str = "same"  # same (the training device) | cpu
    student: str = "copy-2dec"  # copy-2dec | small
    preset: str | None = None  # a shipped preset whose student and loss the row trains as they are

    def cuda_only(self) -> bool:
        # a preset row runs anywhere (fp32 off CUDA): its student and loss are what it measures
        return (self.amp == "bf16" and self.preset is None) or self.teacher_device == "cpu"


def rows(batch_sizes: list[int]) -> list[Row]:
    base = batch_sizes[len(batch_sizes) // 2]
    out = [
        Row("baseline", batch=base),
        Row("teacher cache", teacher="cache", batch=base),
        Row("bf16", amp="bf16", batch=base),
        Row("gradient checkpointing", checkpointing=True, batch=base),
    ]
    out += [Row(f"batch {b}", batch=b) for b in batch_sizes if b != base]
    out += [
        Row("full decoder (no LoRA)", training="full", batch=base),
        Row("teacher on CPU", teacher_device="cpu", batch=base),
        Row("small-shaped student", student="small", batch=base),
    ]
    return out + [preset_row(name) for name in PRESETS]


def preset_row(name: str) -> Row:
    """The row of a shipped preset: its batch size, precision, teacher source and student kind."""
    cfg = load_config(name)
    return Row(
        f"preset {name}",
        teacher="cache" if cfg.teacher_cache else "online",
        amp=cfg.train.amp,
        batch=cfg.train.batch_size,
        training="lora" if cfg.student.lora.r > 0 else "full",
        student="copy-2dec" if cfg.student.init == "copy" else "small",
        preset=name,
    )


def processor():
    """A WhisperProcessor with the real tokenizer (English-only ids; the models keep 51865 logits)."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    tok = WhisperTokenizerFast(tokenizer_file=str(TOKENIZER), pad_token="<|endoftext|>")
    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok)


def random_whisper(shape: tuple[int, int, int, int, int], device: str, seed: int):
    """A Whisper of ``shape`` with random weights, built directly on ``device`` (fp32)."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    d, enc, dec, heads, ffn = shape
    ids = {
        "decoder_start_token_id": 50257,
        "eos_token_id": 50256,
        "pad_token_id": 50256,
        "bos_token_id": 50256,
    }
    cfg = WhisperConfig(
        vocab_size=VOCAB,
        num_mel_bins=80,
        d_model=d,
        encoder_layers=enc,
        decoder_layers=dec,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_source_positions=1500,
        max_target_positions=448,
        **ids,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(
        **ids, no_timestamps_token_id=50362, is_multilingual=False, max_length=448
    )
    return model


def write_data(folder: Path, n: int) -> Path:
    """``n`` tone clips of 2-4 s with short transcripts (the loop needs audio and text, not speech)."""
    folder.mkdir(parents=True, exist_ok=True)
    words = "the quick brown fox jumps over a lazy dog near seven green houses".split()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        t = np.arange(int(16000 * (2 + i % 3))) / 16000
        sf.write(
            folder / f"u{i}.wav", (0.2 * np.sin(2 * np.pi * (200 + 20 * i) * t)).astype(np.float32), 16000
        )
        text = " ".join(rng.choice(words, size=4 + i % 6)).capitalize() + "."
        lines.append(json.dumps({"audio_filepath": f"u{i}.wav", "text": text, "speaker": f"s{i % 4}"}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def preset_parts(row: Row, shapes: dict, small_dir: Path) -> tuple[dict, dict]:
    """(student, loss) sections of the row's preset as shipped; a pretrained student is the random
    small-shaped one, and keeps no more decoder layers than its shape has (``--size tiny``)."""
    raw = read_yaml(row.preset)
    student, loss = dict(raw["student"]), dict(raw["loss"])
    if student["init"] == "pretrained":
        student["from"] = str(small_dir)
    own = shapes["small" if student["init"] == "pretrained" else "teacher"][2]
    student["decoder_layers"] = min(student.get("decoder_layers", own), own)
    return student, loss


def write_config(work: Path, manifest: Path, row: Row, device: str, small_dir: Path, shapes: dict) -> Path:
    """The run's YAML: the distil-large-v2 preset's student and loss, this row's changes (a preset row:
    that preset's student and loss)."""
    student = {
        "init": "copy",
        "decoder_layers": 2,
        "freeze_encoder": True,
        "lora": {"r": 32 if row.training == "lora" else 0, "alpha": 64, "dropout": 0.1},
    }
    student["lora"]["targets"] = "decoder-text-side"
    if row.student == "small":
        student.update({"init": "pretrained", "from": str(small_dir)})
    loss = {"kl_weight": 1.0, "kl_warmup_steps": 0, "temperature": 2.0, "hidden_on": "decoder"}
    if row.preset:
        student, loss = preset_parts(row, shapes, small_dir)
    cfg = {
        "teacher": "random-large-v2",
        "student": student,
        "loss": loss,
        "data": {"train": str(manifest), "val": str(manifest), "val_limit": 1},
        "train": {
            "max_steps": 1000,
            "warmup_steps": 0,  # full learning rate from the first step: every step must move the weights
            "lr": 3e-4,
            "batch_size": row.batch,
            "amp": row.amp if device.startswith("cuda") else "no",
            "grad_checkpointing": row.checkpointing,
            "eval_every": 0,
            "save_every": 0,
            "num_workers": 0,
            "device": device,
            "teacher_device": "cpu" if row.teacher_device == "cpu" else device,
            "seed": 0,
        },
        "run_dir": str(work / "run"),
    }
    path = work / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class MemoryCache:
    """The teacher cache stand-in: each batch's outputs computed once before timing, kept in CPU memory
    and handed over as a cache reader does (``compute_loss`` moves them to the training device)."""

    def __init__(self, online, batches: list[dict]):
        self.offer = online.offer
        with torch.no_grad():
            self.store = {tuple(b["ids"]): online(b).to(torch.device("cpu")) for b in batches}

    def __call__(self, batch: dict):
        return self.store[tuple(batch["ids"])]


class Memory:
    """Peak memory of one row: CUDA allocator peaks, or the process's peak RSS (reset where Linux allows)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def reset(self) -> None:
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        else:
            with contextlib.suppress(OSError):
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS

    def peaks(self) -> dict:
        from geodistill.decoding.speed import process_peak_rss_mb

        if self.cuda:
            torch.cuda.synchronize()
            return {
                "max_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
                "max_reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
            }
        return {"peak_rss_mb": process_peak_rss_mb()}


def batches_for(run, n: int) -> list[dict]:
    """The first ``n`` batches the run's stream yields (collated once; timing excludes data loading)."""
    from geodistill.train.batches import BatchStream

    stream = BatchStream(run.train_set, run.collate, run.cfg.train.batch_size, run.cfg.train.seed)
    return [next(stream) for _ in range(n)]


def measure(row: Row, args, teacher, proc, manifest: Path, small_dir: Path) -> dict:
    """Build the row's run and time ``args.steps`` + 1 training steps (the first one excluded)."""
    from transformers import get_cosine_schedule_with_warmup

    from geodistill.losses import DistillationLoss
    from geodistill.teacher import OnlineTeacher
    from geodistill.train.loop import Session, TrainState, make_optimizer
    from geodistill.train.setup import build_run
    from geodistill.train.trackers import Trackers

    device = torch.device(args.device)
    cfg = load_config(write_config(Path(args.work), manifest, row, args.device, small_dir, SHAPES[args.size]))
    home = torch.device("cpu") if row.teacher_device == "cpu" else device
    teacher.to(home, torch.float16 if home.type == "cuda" else torch.float32)
    run = build_run(cfg, teacher_model=(teacher, proc))
    batches = batches_for(run, args.steps + 1)  # cycled: warm-up steps reuse them
    if row.teacher == "cache":  # a cached run keeps its teacher on the CPU (train.teacher.load_teacher)
        layers = run.teacher.offer.cross_kv_layers
        run.teacher = MemoryCache(OnlineTeacher(teacher, cross_kv_layers=layers), batches)
        teacher.to("cpu", torch.float32)
    opt = make_optimizer(run.student.trainable, cfg.train.lr, cfg.train.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, cfg.train.warmup_steps, cfg.train.max_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.train.amp == "fp16" and device.type == "cuda")
    loss_fn = DistillationLoss(cfg.loss).to(device)
    session = Session(run, TrainState(), itertools.cycle(batches), opt, sched, scaler, loss_fn, Trackers([]))
    trained = {n: p for n, p in run.student.trainable.named_parameters() if p.requires_grad}
    before = {n: p.detach().to("cpu", copy=True) for n, p in trained.items()}
    run.student.trainable.train()
    memory = Memory(device)
    memory.reset()  # the peak: what stays resident (weights, cache, optimiser) plus the steps' transients
    warmup = timed_steps(session, device, MAX_WARMUP, until_applied=True)
    timed = timed_steps(session, device, args.steps)
    seconds, totals, applied = (warmup[k] + timed[k] for k in ("seconds", "totals", "applied"))
    changed = sum(not torch.equal(before[n], p.detach().cpu()) for n, p in trained.items())
    result = {
        **dataclasses.asdict(row),
        "batch": row.batch,
        "step_s": statistics.median(timed["seconds"]),
        "first_step_s": seconds[0],
        "warmup_steps": len(warmup["seconds"]),
        **memory.peaks(),
        "trainable_params_m": sum(p.numel() for p in trained.values()) / 1e6,
        "losses": totals,
        "steps_applied": sum(applied),
        "tensors_changed": changed,
        "tensors_trained": len(trained),
        "ok": all(math.isfinite(v) for v in totals) and all(timed["applied"]) and changed > 0,
    }
    del session, opt, sched, run, batches, before, trained
    return result


def timed_steps(session, device: torch.device, n: int, until_applied: bool = False) -> dict[str, list]:
    """Run ``n`` training steps (with ``until_applied``: stop after the first one the optimiser applied,
    i.e. once fp16's GradScaler has lowered its scale below overflow); seconds, totals, applied flags."""
    out: dict[str, list] = {"seconds": [], "totals": [], "applied": []}
    for _ in range(n):
        _sync(device)
        t0 = time.perf_counter()
        values, _, ok = session.train_step()
        _sync(device)
        session.state.step += 1
        out["seconds"].append(time.perf_counter() - t0)
        out["totals"].append(values.get("total", math.nan))
        out["applied"].append(bool(ok))
        if until_applied and ok:
            break
    return out


def teacher_pass(teacher, device: torch.device, batch: int, new_tokens: int, steps: int) -> dict:
    """Median seconds of the teacher's two passes over a batch of ``batch`` 30-s inputs, in its precision
    (fp16 on CUDA): the cache build's teacher-forced forward over prompt + ``new_tokens`` positions, and
    greedy generation of ``new_tokens`` (pseudo-labelling; forced to that length). One warm-up each."""
    from geodistill.models.forward import forward_states  # noqa: PLC0415 -- after transformers' logging is set

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    teacher.to(device, dtype)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(batch, 80, 3000, generator=gen).to(device, dtype)
    labels = torch.randint(0, 50000, (batch, PROMPT_TOKENS + new_tokens), generator=gen).to(device)
    generated: list[int] = []

    def forward() -> None:
        forward_states(teacher, labels, input_features=feats)

    def generate() -> None:
        out = teacher.generate(feats, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        generated.append(out.shape[-1])

    result: dict = {"batch": batch, "decoder_positions": labels.shape[1], "new_tokens": new_tokens}
    with torch.inference_mode():
        for name, fn in (("forward", forward), ("generate", generate)):
            seconds = []
            for _ in range(steps + 1):
                _sync(device)
                t0 = time.perf_counter()
                fn()
                _sync(device)
                seconds.append(time.perf_counter() - t0)
            result[f"{name}_s"] = statistics.median(seconds[1:])
            result[f"{name}_utt_per_s"] = batch / result[f"{name}_s"]
    result["ok"] = min(generated) >= new_tokens  # every generation ran to the asked length
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def markdown(report: dict) -> str:
    cuda = report["device"].startswith("cuda")
    mem_head = "peak allocated MiB | peak reserved MiB" if cuda else "peak RSS MiB"
    lines = [
        f"### GPU step: {report['device_name']} ({report['device']}, size {report['size']})",
        "",
        f"Command: `{report['command']}`  ",
        f"torch {report['torch']}, {report['date']}; teacher {report['shapes']['teacher']}, small student "
        f"{report['shapes']['small']} (d_model, encoder layers, decoder layers, heads, FFN), "
        f"vocabulary {VOCAB}, random weights; median of {report['steps']} steps after the warm-up (untimed "
        "steps up to the first one applied: fp16's GradScaler skips overflowing ones).",
        "",
        f"| row | teacher | precision | grad ckpt | batch | training | teacher device | student | step s | "
        f"{mem_head} | trainable M | checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if cuda else ""),
    ]
    for r in report["rows"]:
        if "skipped" in r:
            lines.append(f"| {r['name']} | {r['skipped']} |" + " |" * (11 if cuda else 10))
            continue
        precision = r["amp"] if cuda else "fp32"
        mem = (
            f"{r['max_allocated_mb']:.0f} | {r['max_reserved_mb']:.0f}" if cuda else f"{r['peak_rss_mb']:.0f}"
        )
        check = "ok" if r["ok"] else "FAILED"
        lines.append(
            f"| {r['name']} | {r['teacher']} | {precision} | {'on' if r['checkpointing'] else 'off'} | "
            f"{r['batch']} | {r['training']} | {r['teacher_device']} | {r['student']} | {r['step_s']:.3f} | "
            f"{mem} | {r['trainable_params_m']:.2f} | {check} ({r['tensors_changed']}/{r['tensors_trained']} "
            f"tensors moved, {r['steps_applied']}/{len(r['losses'])} steps applied) |"
        )
    t = report.get("teacher_pass")
    if t:
        lines += [
            "",
            f"Teacher passes ({'fp16' if cuda else 'fp32'}): batch {t['batch']} of 30-s inputs, median of "
            f"{report['steps']} after a warm-up; {t['decoder_positions']} decoder positions (cache build), "
            f"{t['new_tokens']} generated tokens (pseudo-labels).",
            "",
            "| pass | s per batch | utterances/s | checks |",
            "|---|---:|---:|---|",
            f"| teacher-forced forward (cache build) | {t['forward_s']:.3f} | "
            f"{t['forward_utt_per_s']:.1f} | |",
            f"| greedy generation (pseudo-labels) | {t['generate_s']:.3f} | {t['generate_utt_per_s']:.1f} | "
            f"{'ok' if t['ok'] else 'FAILED'} |",
        ]
    return "\n".join(lines)


def replace_section(path: Path, text: str) -> None:
    """Put ``text`` between this benchmark's markers in ``path``."""
    write_section(
        path,
        text,
        MARK_START,
        MARK_END,
        intro="## GPU step: memory and time of one distillation step (`benchmarks/gpu_step.py`)\n\n",
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", choices=sorted(SHAPES), default=None, help="full on CUDA, tiny elsewhere")
    p.add_argument("--device", default=None, help="cuda when present, else cpu")
    p.add_argument("--steps", type=int, default=3, help="timed steps per row (after the untimed warm-up)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="8 16 32 (full), 2 4 (tiny)")
    p.add_argument("--only", nargs="+", default=None, help="row names to run (default: all)")
    p.add_argument(
        "--teacher-batch", type=int, default=None, help="teacher passes' batch: 32 (full), 2 (tiny)"
    )
    p.add_argument("--new-tokens", type=int, default=NEW_TOKENS, help="tokens per utterance, teacher passes")
    p.add_argument("--work", default="runs/bench-gpu-step")
    p.add_argument("--json", default=None, help="result file (default: WORK/result.json)")
    p.add_argument("--write", default=None, help="markdown file whose GPU step section is replaced")
    a = p.parse_args(argv)
    a.device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    a.size = a.size or ("full" if a.device.startswith("cuda") else "tiny")
    a.batch_sizes = a.batch_sizes or ([8, 16, 32] if a.size == "full" else [2, 4])
    a.teacher_batch = a.teacher_batch or (32 if a.size == "full" else 2)
    if min(a.steps, a.teacher_batch, a.new_tokens, *a.batch_sizes) < 1:
        p.error("--steps, --batch-sizes, --teacher-batch and --new-tokens must be >= 1")
    unknown = set(a.only or ()) - {r.name for r in rows(a.batch_sizes)}
    if unknown:
        p.error(f"--only: no row named {sorted(unknown)} (rows: {[r.name for r in rows(a.batch_sizes)]})")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    work = Path(a.work).resolve()
    a.work = str(work)
    shapes = SHAPES[a.size]
    chosen = [r for r in rows(a.batch_sizes) if not a.only or r.name in a.only]
    manifest = write_data(work / "data", 2 * max([*a.batch_sizes, *(r.batch or 1 for r in chosen)]))
    proc = processor()
    small_dir = work / "small-student"
    random_whisper(shapes["small"], "cpu", seed=1).save_pretrained(small_dir)
    proc.save_pretrained(small_dir)
    teacher = random_whisper(shapes["teacher"], a.device, seed=0).requires_grad_(False)
    cuda = a.device.startswith("cuda")
    results = []
    for row in chosen:
        if row.cuda_only() and not cuda:
            results.append({"name": row.name, "skipped": "CUDA only (not measured here)"})
            continue
        results.append(measure(row, a, teacher, proc, manifest, small_dir))
        print(f"{row.name}: {results[-1]['step_s']:.3f} s/step", file=sys.stderr)
    passes = teacher_pass(teacher, torch.device(a.device), a.teacher_batch, a.new_tokens, a.steps)
    report = {
        "device": a.device,
        "device_name": device_name(a.device),
        "size": a.size,
        "shapes": shapes,
        "steps": a.steps,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
        "command": " ".join(
            ["python", "benchmarks/gpu_step.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "rows": results,
        "teacher_pass": passes,
    }
    out = Path(a.json) if a.json else work / "result.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    text = markdown(report)
    print(text)
    if a.write:
        replace_section(Path(a.write), text)
    return 0 if all(r.get("ok", True) for r in results) and passes["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
