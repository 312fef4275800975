"""The distillation loop: AdamW + cosine warm-up, AMP, unscale -> clip -> step, exact resume.

Read ``train`` top to bottom: build the run, restore a checkpoint if there is one, then for each step
draw ``grad_accum`` micro-batches, ask the teacher for its outputs, run the student, combine the
loss parts, and step the optimiser; validate, checkpoint and log on their own schedules.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from geodistill.config import Config
from geodistill.errors import GeodistillError
from geodistill.losses import DistillationLoss, StudentOut
from geodistill.losses.kd import valid_mask
from geodistill.teacher.outputs import forward_states
from geodistill.train.batches import BatchStream
from geodistill.train.checkpoint import (
    CHECKPOINT,
    assert_finite,
    load_checkpoint,
    load_trainable,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state,
)
from geodistill.train.distributed import (
    all_ranks_agree,
    any_rank,
    average_gradients,
    barrier,
    close,
    init_world,
)
from geodistill.train.outputs import check_resumed_config, save_student, setup_logging, write_run_config
from geodistill.train.setup import Run, build_run
from geodistill.train.signals import StopFlag
from geodistill.train.validate import validate

log = logging.getLogger("geodistill")
CRASH_ENV = "GEODISTILL_CRASH_AFTER_STEP"  # fault injection for tests: SIGKILL right after that checkpoint


@dataclass
class TrainResult:
    exit_code: int  # 0 done, 130/143 stopped by SIGINT/SIGTERM (checkpoint written)
    step: int
    run_dir: Path
    best_wer: float | None = None
    final_wer: float | None = None
    history: dict = field(default_factory=dict)


@dataclass
class TrainState:
    step: int = 0
    best_wer: float | None = None
    bad_streak: int = 0  # consecutive non-finite steps
    skipped_steps: int = 0
    history: dict = field(default_factory=lambda: {"train": [], "val": [], "skipped": []})

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "best_wer": self.best_wer,
            "bad_streak": self.bad_streak,
            "skipped_steps": self.skipped_steps,
            "history": json.dumps(self.history),
        }

    def load_state_dict(self, d: dict) -> None:
        self.step, self.best_wer, self.bad_streak = d["step"], d["best_wer"], d["bad_streak"]
        self.skipped_steps, self.history = d["skipped_steps"], json.loads(d["history"])


def make_optimizer(module: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with decay on matrices only (biases, norms and other vectors are not decayed)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise GeodistillError(
            "nothing to train: every student parameter is frozen (check student.lora / freeze)"
        )
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


def _autocast(run: Run) -> contextlib.AbstractContextManager:
    amp = run.cfg.train.amp
    if amp == "no" or run.device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


def compute_loss(run: Run, loss_fn: DistillationLoss, batch: dict, step: int) -> tuple[torch.Tensor, dict]:
    """Teacher outputs + student forward + weighted loss parts for one micro-batch."""
    dev = run.device
    teacher = run.teacher(batch).to(dev)
    dec_ids = batch["decoder_input_ids"].to(dev)
    enc = None
    if run.shares_encoder and teacher.encoder_hidden is not None:  # frozen shared encoder: skip its forward
        enc = teacher.encoder_hidden.to(dev, torch.float32)
    feats = None if enc is not None else batch["input_features"].to(dev)
    given = teacher.cross_kv or {}  # frozen cross-attention keys/values the student shares with the teacher
    kv = {i: tuple(t.to(dev, torch.float32) for t in given[j]) for i, j in run.cross_kv.items() if j in given}
    # Only the positions the token losses read (labels != -100): no LM head over prompt and padding.
    labels = batch["labels"].to(dev)
    keep = valid_mask(labels)
    s = forward_states(
        run.whisper, dec_ids, input_features=feats, encoder_hidden=enc, cross_kv=kv, positions=keep
    )
    proj = run.projectors
    student = StudentOut(
        logits=s.logits,
        decoder_hidden=proj["decoder"](s.decoder_hidden) if "decoder" in proj else None,
        encoder_hidden=proj["encoder"](s.encoder_hidden) if "encoder" in proj else None,
    )
    return loss_fn(
        student, teacher.at(keep), labels[keep][None], step=step, total_steps=run.cfg.train.max_steps
    )


def _next_batch(stream: BatchStream) -> dict:
    for _ in range(1000):  # a batch whose every sample was bad arrives empty: take the next one
        batch = next(stream)
        if batch["ids"]:
            return batch
    raise GeodistillError("1000 consecutive empty batches: almost every training sample is bad")


def train_step(
    run: Run, stream: BatchStream, loss_fn, opt, sched, scaler, step: int
) -> tuple[dict, list[str], bool]:
    """One optimiser step over ``grad_accum`` micro-batches. Returns (logged values, sample ids, ok)."""
    t = run.cfg.train
    opt.zero_grad(set_to_none=True)
    sums: dict[str, float] = {}
    ids: list[str] = []
    finite = True
    for _ in range(t.grad_accum):
        batch = _next_batch(stream)
        ids += batch["ids"]
        with _autocast(run):
            total, parts = compute_loss(run, loss_fn, batch, step=step)
        if not torch.isfinite(total):
            finite = False
            continue
        scaler.scale(total / t.grad_accum).backward()
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + float(value) / t.grad_accum
    params = [p for g in opt.param_groups for p in g["params"]]
    average_gradients(params, run.world)  # data parallel: every rank applies the mean gradient
    scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, t.clip)
    # Under fp16 an overflowing gradient is the scaler's business (it skips and lowers the scale).
    finite = all_ranks_agree(finite and (scaler.is_enabled() or bool(torch.isfinite(grad_norm))), run.world)
    if finite:
        scaler.step(opt)
        sched.step()
    scaler.update()
    sums.update(grad_norm=float(grad_norm), lr=sched.get_last_lr()[0])
    return sums, ids, finite


def _checkpoint(run, state, opt, sched, scaler, loss_fn, stream) -> None:
    if not run.world.is_main:  # rank 0 writes; the others wait so nobody reads a file being replaced
        barrier(run.world)
        return
    assert_finite(run.trainable)
    save_checkpoint(
        run.run_dir / CHECKPOINT,
        {
            "trainable": trainable_state(run.trainable),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "scaler": scaler.state_dict(),
            "loss": loss_fn.state_dict(),
            "data": stream.state_dict(),
            "rng": rng_state(),
            "state": state.state_dict(),
        },
    )
    (run.run_dir / "training_history.json").write_text(json.dumps(state.history, indent=1))
    barrier(run.world)


def _restore(run, ckpt, state, opt, sched, scaler, loss_fn) -> None:
    load_trainable(run.trainable, ckpt["trainable"], str(run.run_dir / CHECKPOINT))
    opt.load_state_dict(ckpt["optimizer"])
    sched.load_state_dict(ckpt["scheduler"])
    scaler.load_state_dict(ckpt["scaler"])
    loss_fn.load_state_dict(ckpt["loss"])
    state.load_state_dict(ckpt["state"])
    set_rng_state(ckpt["rng"])
    log.info("resumed from %s at step %d", run.run_dir / CHECKPOINT, state.step)


def _log_train(writer: SummaryWriter, bar, state: TrainState, values: dict) -> None:
    state.history["train"].append({"step": state.step, **{k: round(v, 8) for k, v in values.items()}})
    for name, value in values.items():
        writer.add_scalar(f"train/{name}", value, state.step)
    bar.set_postfix({k: f"{v:.4g}" for k, v in values.items() if k not in ("lr",)}, refresh=False)


def _evaluate(run: Run, state: TrainState, writer: SummaryWriter, on_eval) -> float | None:
    if not run.val_utts:
        return None
    if not run.world.is_main:  # rank 0 validates alone
        barrier(run.world)
        return None
    result = validate(run)
    state.history["val"].append({"step": state.step, **result})
    writer.add_scalar("val/wer", result["wer"], state.step)
    writer.add_scalar("val/wer_raw", result["wer_raw"], state.step)
    log.info(
        "step %d: validation WER %.4f (raw %.4f) on %d utterances",
        state.step,
        result["wer"],
        result["wer_raw"],
        result["n_utterances"],
    )
    if state.best_wer is None or result["wer"] < state.best_wer:
        state.best_wer = result["wer"]
        save_student(run, run.run_dir / "best", extra={"step": state.step, **result})
    barrier(run.world)
    if on_eval is not None:
        on_eval(state.step, result["wer"])  # may raise (e.g. optuna.TrialPruned)
    return result["wer"]


def train(
    cfg: Config,
    on_eval: Callable[[int, float], None] | None = None,
    teacher_provider=None,
    teacher_model=None,
) -> TrainResult:
    """Distil ``cfg.teacher`` into the configured student; a rerun resumes from ``run_dir/checkpoint.pt``."""
    world = init_world(cfg.train.device)  # a no-op unless launched by torchrun / accelerate
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if world.is_main:
        setup_logging(run_dir)
    ckpt = load_checkpoint(run_dir / CHECKPOINT)
    if ckpt is not None:
        check_resumed_config(cfg, run_dir)
    run = build_run(cfg, teacher_provider=teacher_provider, teacher_model=teacher_model, world=world)
    if world.is_main:
        write_run_config(cfg, run_dir)
    t = cfg.train
    opt = make_optimizer(run.trainable, t.lr, t.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, t.warmup_steps, t.max_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=t.amp == "fp16" and run.device.type == "cuda")
    loss_fn = DistillationLoss(cfg.loss).to(run.device)
    state = TrainState()
    stream_pos = {"epoch": 0, "offset": 0}
    if ckpt is not None:
        _restore(run, ckpt, state, opt, sched, scaler, loss_fn)
        stream_pos = ckpt["data"]
    stream = BatchStream(
        run.train_set,
        run.collate,
        t.batch_size,
        t.seed,
        num_workers=t.num_workers,
        pin_memory=run.device.type == "cuda",
        rank=world.rank,
        world=world.size,
        **stream_pos,
    )
    writer = (
        SummaryWriter(str(run_dir / "tb"), purge_step=state.step if ckpt is not None else None)
        if world.is_main
        else _NoWriter()
    )
    try:  # a pruned tuning trial raises out of on_eval: still close the event file and the process group
        return _loop(run, state, stream, opt, sched, scaler, loss_fn, writer, on_eval)
    finally:
        writer.close()
        close(world)


def _loop(run: Run, state: TrainState, stream, opt, sched, scaler, loss_fn, writer, on_eval) -> TrainResult:
    """Steps until ``train.max_steps`` (or a signal); validate, log and checkpoint on their schedules."""
    t, world = run.cfg.train, run.world
    last_wer = None
    run.trainable.train()
    bar = tqdm(total=t.max_steps, initial=state.step, desc="distil", disable=not world.is_main)
    with StopFlag() as stop, bar:
        while state.step < t.max_steps:
            if any_rank(stop.requested, world):
                _checkpoint(run, state, opt, sched, scaler, loss_fn, stream)
                log.warning(
                    "stopped by signal %s at step %d; checkpoint written, rerun to resume",
                    stop.signum,
                    state.step,
                )
                return TrainResult(
                    stop.exit_code or 143, state.step, run.run_dir, state.best_wer, None, state.history
                )
            started = time.perf_counter()
            values, ids, ok = train_step(run, stream, loss_fn, opt, sched, scaler, state.step)
            writer.add_scalar("time/step_seconds", time.perf_counter() - started, state.step + 1)
            if not ok:
                _skip_step(state, ids, t.max_bad_steps)
                continue
            state.bad_streak = 0
            state.step += 1
            loss_fn.update(step=state.step, total_steps=t.max_steps)
            bar.update(1)
            if state.step % t.log_every == 0 or state.step == t.max_steps:
                _log_train(writer, bar, state, values)
            if t.eval_every and state.step % t.eval_every == 0 and state.step < t.max_steps:
                last_wer = _evaluate(run, state, writer, on_eval)
            if (t.save_every and state.step % t.save_every == 0) or state.step == t.max_steps:
                _checkpoint(run, state, opt, sched, scaler, loss_fn, stream)
                if os.environ.get(CRASH_ENV) == str(state.step):
                    os.kill(os.getpid(), signal.SIGKILL)
    if not state.history["val"] or state.history["val"][-1]["step"] != state.step:
        last_wer = _evaluate(run, state, writer, on_eval)
        _checkpoint(run, state, opt, sched, scaler, loss_fn, stream)
    else:
        last_wer = state.history["val"][-1]["wer"]
    if world.is_main:
        save_student(run, run.run_dir / "adapter_final", extra={"step": state.step, "val_wer": last_wer})
    log.info("done: %d steps, best validation WER %s, run folder %s", state.step, state.best_wer, run.run_dir)
    return TrainResult(0, state.step, run.run_dir, state.best_wer, last_wer, state.history)


class _NoWriter:
    """Stands in for SummaryWriter on ranks other than 0."""

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _skip_step(state: TrainState, ids: list[str], max_bad: int) -> None:
    """Record a non-finite step (no update was made) and stop after ``max_bad`` in a row."""
    state.bad_streak += 1
    state.skipped_steps += 1
    state.history["skipped"].append({"after_step": state.step, "ids": ids})
    log.warning(
        "non-finite loss or gradient after step %d: step skipped (samples: %s)", state.step, ", ".join(ids)
    )
    if state.bad_streak >= max_bad:
        recent = [i for entry in state.history["skipped"][-max_bad:] for i in entry["ids"]]
        raise GeodistillError(
            f"{max_bad} non-finite steps in a row (train.max_bad_steps); last samples: "
            f"{', '.join(recent[:20])}; the last checkpoint is intact"
        )
