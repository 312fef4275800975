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
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import get_cosine_schedule_with_warmup

from geodistill.config import Config
from geodistill.contracts import Batch, Objective, TeacherProvider
from geodistill.data.hub import StreamBatches, hub_batches, is_hub_spec
from geodistill.distributed import (
    all_ranks_agree,
    any_rank,
    average_gradients,
    barrier,
    close,
    init_world,
)
from geodistill.errors import GeodistillError
from geodistill.outdir import output_dir
from geodistill.progress import progress
from geodistill.runfolder import RunFolder
from geodistill.runlock import hold
from geodistill.students import FAMILIES
from geodistill.teacher.factory import TeacherModel
from geodistill.train.batches import BatchStream
from geodistill.train.checkpoint import (
    assert_finite,
    load_checkpoint,
    load_trainable,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state,
)
from geodistill.train.outputs import check_resumed_config, run_log, write_run_config
from geodistill.train.setup import Run, build_run
from geodistill.train.signals import StopFlag
from geodistill.train.trackers import Trackers, check_trackers, open_trackers
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


def compute_loss(run: Run, loss_fn: Objective, batch: Batch, step: int) -> tuple[torch.Tensor, dict]:
    """Teacher outputs, then the student's forward and weighted loss parts for one micro-batch."""
    teacher = run.teacher(batch).to(run.device)
    return run.student.loss(loss_fn, batch, teacher, step, run.cfg.train.max_steps)


def make_loss(run: Run) -> Objective:
    """The objective of the run's student family, on the run's device."""
    return FAMILIES[run.student.family].objective(run.cfg, run.teacher.offer).to(run.device)


def _next_batch(stream: BatchStream | StreamBatches) -> Batch:
    for _ in range(1000):  # a batch whose every sample was bad arrives empty: take the next one
        batch = next(stream)
        if batch["ids"]:
            return batch
    raise GeodistillError("1000 consecutive empty batches: almost every training sample is bad")


@dataclass
class Session:
    """Everything a training run changes as it goes, in one object: torchtune's recipe shape
    (set up in ``train``; then ``train_step`` / ``save`` / ``restore``)."""

    run: Run
    state: TrainState
    stream: BatchStream | StreamBatches
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loss_fn: Objective  # the family's objective (make_loss)
    trackers: Trackers  # train.report_to (none on ranks other than the main one)

    def train_step(self) -> tuple[dict, list[str], bool]:
        """One optimiser step over ``grad_accum`` micro-batches. Returns (logged values, sample ids, ok)."""
        run, opt, scaler, t = self.run, self.opt, self.scaler, self.run.cfg.train
        opt.zero_grad(set_to_none=True)
        sums: dict[str, float] = {}
        ids: list[str] = []
        finite = True
        for _ in range(t.grad_accum):
            batch = _next_batch(self.stream)
            ids += batch["ids"]
            with _autocast(run):
                total, parts = compute_loss(run, self.loss_fn, batch, step=self.state.step)
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
        ok = finite and (scaler.is_enabled() or bool(torch.isfinite(grad_norm)))
        finite = all_ranks_agree(ok, run.world)
        if finite:
            scaler.step(opt)
            self.sched.step()
        scaler.update()
        sums.update(grad_norm=float(grad_norm), lr=float(self.sched.get_last_lr()[0]))
        return sums, ids, finite

    def save(self) -> None:
        """Write the checkpoint (rank 0; the others wait so nobody reads a file being replaced)."""
        run = self.run
        if not run.world.is_main:
            barrier(run.world)
            return
        trainable = run.student.trainable
        assert_finite(trainable)
        save_checkpoint(
            run.folder.checkpoint,
            {
                "trainable": trainable_state(trainable),
                "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict(),
                "scaler": self.scaler.state_dict(),
                "loss": self.loss_fn.state_dict(),
                "data": self.stream.state_dict(),
                "rng": rng_state(),
                "state": self.state.state_dict(),
            },
        )
        run.folder.write_json(run.folder.history_file, self.state.history, indent=1)
        barrier(run.world)

    def restore(self, ckpt: dict) -> None:
        """Load every piece of ``save``'s checkpoint except the data position (the stream takes that)."""
        run = self.run
        load_trainable(run.student.trainable, ckpt["trainable"], str(run.folder.checkpoint))
        self.opt.load_state_dict(ckpt["optimizer"])
        self.sched.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.loss_fn.load_state_dict(ckpt["loss"])
        self.state.load_state_dict(ckpt["state"])
        set_rng_state(ckpt["rng"])
        log.info("resumed from %s at step %d", run.folder.checkpoint, self.state.step)

    def log_train(self, bar, values: dict) -> None:
        state = self.state
        state.history["train"].append({"step": state.step, **{k: round(v, 8) for k, v in values.items()}})
        self.trackers.log({f"train/{name}": value for name, value in values.items()}, state.step)
        shown = {k: f"{v:.4g}" for k, v in values.items() if k not in ("lr",)}
        bar.set_postfix(shown, refresh=False)
        if bar.disable and self.run.world.is_main:  # no bar (not a terminal, or -q): a log line instead
            parts = ", ".join(f"{k} {v}" for k, v in shown.items())
            log.info("step %d/%d: %s", state.step, self.run.cfg.train.max_steps, parts)

    def evaluate(self, on_eval) -> float | None:
        run, state = self.run, self.state
        if not run.val_utts:
            return None
        if not run.world.is_main:  # rank 0 validates alone
            barrier(run.world)
            return None
        result = validate(run)
        state.history["val"].append({"step": state.step, **result})
        self.trackers.log({"val/wer": result["wer"], "val/wer_raw": result["wer_raw"]}, state.step)
        log.info(
            "step %d: validation WER %.4f (raw %.4f) on %d utterances",
            state.step,
            result["wer"],
            result["wer_raw"],
            result["n_utterances"],
        )
        if state.best_wer is None or result["wer"] < state.best_wer:
            state.best_wer = result["wer"]
            run.student.save(run.folder.best, extra={"step": state.step, **result})
        barrier(run.world)
        if on_eval is not None:
            on_eval(state.step, result["wer"])  # may raise (e.g. optuna.TrialPruned)
        return result["wer"]


def train(
    cfg: Config,
    on_eval: Callable[[int, float], None] | None = None,
    teacher_provider: TeacherProvider | None = None,
    teacher_model: TeacherModel | None = None,
) -> TrainResult:
    """Distil ``cfg.teacher`` into the configured student; a rerun resumes from ``run_dir/checkpoint.pt``."""
    world = init_world(cfg.train.device)  # a no-op unless launched by torchrun / accelerate
    try:
        run_dir = output_dir(cfg.run_dir, "run_dir")
        # One run per folder: rank 0 holds it (a second `geodistill train` on it is refused up front).
        held = hold(run_dir, "geodistill train") if world.is_main else contextlib.nullcontext()
    except GeodistillError:
        close(world)
        raise
    with held, run_log(run_dir) if world.is_main else contextlib.nullcontext():
        return _train(cfg, world, on_eval, teacher_provider, teacher_model)


def _train(cfg: Config, world, on_eval, teacher_provider, teacher_model) -> TrainResult:
    run_dir = Path(cfg.run_dir)
    ckpt = load_checkpoint(RunFolder(run_dir).checkpoint)
    if ckpt is not None:
        check_resumed_config(cfg, run_dir)
    if world.is_main:  # a tracker's missing package: one line now, not after the teacher has loaded
        check_trackers(cfg.train.report_to)
    run = build_run(cfg, teacher_provider=teacher_provider, teacher_model=teacher_model, world=world)
    if world.is_main:
        write_run_config(cfg, run_dir)
    t = cfg.train
    opt = make_optimizer(run.student.trainable, t.lr, t.weight_decay)
    sched = get_cosine_schedule_with_warmup(opt, t.warmup_steps, t.max_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=t.amp == "fp16" and run.device.type == "cuda")
    loss_fn = make_loss(run)
    stream = _batch_stream(run, ckpt["data"] if ckpt is not None else {"epoch": 0, "offset": 0})
    session = Session(run, TrainState(), stream, opt, sched, scaler, loss_fn, Trackers([]))
    if ckpt is not None:
        session.restore(ckpt)
    resumed_at = session.state.step if ckpt is not None else None
    try:  # a pruned tuning trial raises out of on_eval: still close the trackers and the process group
        session.trackers = open_trackers(cfg, run_dir, resumed_at, enabled=world.is_main)
        try:
            result = _loop(session, on_eval)
        except BaseException:
            session.trackers.close(failed=True)  # warns, never raises: the loop's error is the one to report
            raise
        session.trackers.close(failed=result.exit_code != 0)
        return result
    finally:
        close(world)


def _batch_stream(run: Run, position: dict) -> BatchStream | StreamBatches:
    """The resumable training batches: over the listed utterances, or streamed from a ``hub:`` spec."""
    t, d, world = run.cfg.train, run.cfg.data, run.world
    if d.train is not None and is_hub_spec(d.train):
        return hub_batches(
            d.train,
            run.train_set,
            run.collate,
            t.batch_size,
            t.seed,
            run.bad,
            d.min_duration,
            d.max_duration,
            rank=world.rank,
            world=world.size,
            **position,
        )
    return BatchStream(
        run.train_set,
        run.collate,
        t.batch_size,
        t.seed,
        num_workers=t.num_workers,
        pin_memory=run.device.type == "cuda",
        rank=world.rank,
        world=world.size,
        **position,
    )


def _loop(session: Session, on_eval) -> TrainResult:
    """Steps until ``train.max_steps`` (or a signal); validate, log and checkpoint on their schedules."""
    run, state = session.run, session.state
    t, world = run.cfg.train, run.world
    last_wer = None
    run.student.trainable.train()
    bar = progress(total=t.max_steps, initial=state.step, desc="distil", unit="step", show=world.is_main)
    with StopFlag() as stop, bar:
        while state.step < t.max_steps:
            if any_rank(stop.requested, world):
                session.save()
                log.warning(
                    "stopped by signal %s at step %d; checkpoint written, rerun to resume",
                    stop.signum,
                    state.step,
                )
                return TrainResult(
                    stop.exit_code or 143, state.step, run.run_dir, state.best_wer, None, state.history
                )
            started = time.perf_counter()
            try:
                values, ids, ok = session.train_step()
            except RuntimeError as exc:  # torch.OutOfMemoryError is one
                if not is_out_of_memory(exc):
                    raise
                raise out_of_memory(run, state.step + 1, exc) from None
            session.trackers.log({"time/step_seconds": time.perf_counter() - started}, state.step + 1)
            if not ok:
                _skip_step(state, ids, t.max_bad_steps)
                continue
            state.bad_streak = 0
            state.step += 1
            session.loss_fn.update(step=state.step, total_steps=t.max_steps)
            bar.update(1)
            if state.step % t.log_every == 0 or state.step == t.max_steps:
                session.log_train(bar, values)
            if t.eval_every and state.step % t.eval_every == 0 and state.step < t.max_steps:
                last_wer = session.evaluate(on_eval)
            if (t.save_every and state.step % t.save_every == 0) or state.step == t.max_steps:
                session.save()
                if os.environ.get(CRASH_ENV) == str(state.step):
                    os.kill(os.getpid(), signal.SIGKILL)
    if not state.history["val"] or state.history["val"][-1]["step"] != state.step:
        last_wer = session.evaluate(on_eval)
        session.save()
    else:
        last_wer = state.history["val"][-1]["wer"]
    if world.is_main:
        run.student.save(run.folder.final, extra={"step": state.step, "val_wer": last_wer})
    log.info("done: %d steps, best validation WER %s, run folder %s", state.step, state.best_wer, run.run_dir)
    return TrainResult(0, state.step, run.run_dir, state.best_wer, last_wer, state.history)


# CUDA: "Tried to allocate 2.00 GiB"; the CPU allocator: "you tried to allocate 12884901888 bytes"
_TRIED = re.compile(r"[Tt]ried to allocate (\d+(?:\.\d+)?) ?(bytes|[KMGT]i?B)")
_UNITS = {"bytes": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30,
          "TiB": 2**40}  # fmt: skip


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA out-of-memory error, or the CPU allocator's (a RuntimeError "can't allocate memory")."""
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError)
        and ("can't allocate memory" in text or "not enough memory" in text or "DefaultCPUAllocator" in text)
    )


def _tried(exc: BaseException) -> str | None:
    """The allocation that failed, from the error's text ("12.00 GiB"), or None when it does not say."""
    found = _TRIED.search(str(exc))
    if found is None:
        return None
    size = float(found.group(1)) * _UNITS[found.group(2)]
    for unit in ("GiB", "MiB", "KiB"):
        if size >= _UNITS[unit]:
            return f"{size / _UNITS[unit]:.2f} {unit}"
    return f"{size:.0f} bytes"


def out_of_memory(run: Run, step: int, exc: BaseException) -> GeodistillError:
    """The one-line error of a training step that ran out of memory: the batch size, the allocation that
    failed, what to change, and that the last checkpoint (if any) was not touched."""
    t = run.cfg.train
    where = "GPU memory" if isinstance(exc, torch.OutOfMemoryError) else "memory"
    tried = _tried(exc)
    size = f"; it tried to allocate {tried}" if tried else ""
    checkpoint = run.folder.checkpoint
    kept = f"the checkpoint {checkpoint} is intact" if checkpoint.is_file() else "no checkpoint was written"
    return GeodistillError(
        f"training step {step} ran out of {where} with train.batch_size={t.batch_size} on {run.device}"
        f"{size}; lower train.batch_size (raise train.grad_accum to keep the effective batch of "
        f"{t.batch_size * t.grad_accum}); {kept}"
    )


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
