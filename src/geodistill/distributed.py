"""Data-parallel training under torchrun (or ``accelerate launch``): one process per GPU or CPU slot.

The launcher sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR; each process trains on its own share of
the batches and the trainable gradients (adapters + projectors: small) are averaged with one all-reduce
per step before clipping, so every rank applies the same update. Rank 0 alone validates, logs and writes
the run folder. Without a launcher (WORLD_SIZE unset or 1) every function here is a no-op.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0  # this process's index among all processes
    size: int = 1  # number of processes
    local_rank: int = 0  # index on this machine (picks the GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def init_world(device: str, timeout: datetime.timedelta | None = None) -> World:
    """Join the process group the launcher describes (nccl on CUDA, gloo on CPU); ``timeout``: of each
    collective (torch's default when None; only the first call, which creates the group, sets it)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    if use_cuda:
        torch.cuda.set_device(world.local_rank)
    return world


def average_gradients(params: list[torch.Tensor], world: World) -> None:
    """Mean of each parameter's gradient over ranks (a rank that skipped backward contributes zeros)."""
    if not world.active:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        p.grad = flat[offset : offset + g.numel()].view_as(p).to(p.dtype)
        offset += g.numel()


def all_ranks_agree(flag: bool, world: World) -> bool:
    """True only if ``flag`` holds on every rank (keeps skip / stop decisions in lock-step)."""
    if not world.active:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl reduces GPU tensors only
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def any_rank(flag: bool, world: World) -> bool:
    return not all_ranks_agree(not flag, world)


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def close(world: World) -> None:
    if world.active and dist.is_initialized():
        dist.destroy_process_group()
