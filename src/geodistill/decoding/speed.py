"""Speed and size: real-time factor, peak memory, parameter count, weight bytes.

RTF = compute seconds / audio seconds (below 1 is faster than real time). Timings synchronise the
CUDA device before reading the clock, because kernels run asynchronously and an unsynchronised clock
measures only the launch.

Peak memory has two meanings, by device:
- CUDA: ``torch.cuda.max_memory_allocated`` since ``MemoryMeter.start()`` reset it: tensors only
  (weights, activations, KV cache), not the allocator's cache or the CUDA context.
- CPU: the process's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``). This is
  process-wide and never resets: it includes the Python interpreter, imported libraries, the loaded
  model and anything the process did before the measurement, so it is an upper bound on what the
  measured work needed, comparable between runs only when they do the same setup.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field

import torch

MB = 1024 * 1024


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(x.split(":", 1)[1].strip() for x in f if x.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> str:
    """One line for a benchmark's table: CPU, cores, torch version and the threads torch uses now."""
    threads = torch.get_num_threads()
    return f"{cpu_name()}, nproc {os.cpu_count()}, torch {torch.__version__}, {threads} torch threads"


def synchronize(device: torch.device | str | None) -> None:
    """Wait for queued CUDA kernels on ``device`` (no-op elsewhere)."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def process_peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: VmHWM from /proc/self/status, the high-water mark of this program's own memory. ru_maxrss is
    not used there because it survives exec: a process started by a big parent reports the parent's peak.
    Elsewhere ru_maxrss (KiB on Linux-likes, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024


@dataclass
class MemoryMeter:
    """Peak memory of the work between ``start()`` and ``peak_mb()`` (see the module docstring)."""

    device: torch.device  # where the measured work runs

    def start(self) -> None:
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / MB
        return process_peak_rss_mb()


@dataclass
class Timer:
    """Accumulates device-synchronised wall time over several ``with timer:`` blocks."""

    device: torch.device | str | None = None  # synchronised on entry and exit when it is a CUDA device
    seconds: float = 0.0  # total measured time so far
    laps: list[float] = field(default_factory=list)  # duration of each block

    def __enter__(self) -> Timer:
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        lap = time.perf_counter() - self._t0
        self.laps.append(lap)
        self.seconds += lap


def real_time_factor(compute_seconds: float, audio_seconds: float) -> float:
    """compute / audio; 0 audio gives inf (nothing was transcribed, so no rate exists)."""
    return compute_seconds / audio_seconds if audio_seconds > 0 else float("inf")


def count_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared/tied tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for p in model.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def model_disk_mb(model: torch.nn.Module) -> float:
    """Size of the state dict in its own dtypes, in MiB: what a safetensors file of it would hold.

    Tensors that share storage (tied embeddings) are counted once, as safetensors stores them once.
    """
    seen: set[tuple[int, int]] = set()
    total = 0
    for t in model.state_dict().values():
        key = (t.untyped_storage().data_ptr(), t.storage_offset())
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total / MB
