"""The teacher pass spread over processes (``torchrun`` / ``accelerate launch``): who does which part.

The work (cache shards, pseudo-label parts) is cut into numbered parts of a fixed number of utterances
that does not depend on the number of processes; part ``p`` belongs to rank ``p % world_size``. So every
part's name and content are the same whatever the world size, each rank resumes by skipping the parts
already on disk, and rank 0 writes the index / manifest only after every rank has finished its parts.
Without a launcher (WORLD_SIZE unset or 1) there is one rank owning every part and no collective runs.
"""

from __future__ import annotations

import datetime
import os
import signal
from typing import TypeVar

import torch.distributed as dist

from geodistill.distributed import World, barrier, init_world

CRASH_ENV = "GEODISTILL_CRASH_AFTER_PART"  # fault injection for tests: "RANK:N" (see part_written)
# Ranks wait for the slowest one at the end of a teacher pass over a whole corpus: far longer than the
# default 10-30 minute collective timeout.
TEACHER_PASS_TIMEOUT = datetime.timedelta(hours=48)

T = TypeVar("T")


def teacher_world(device: str) -> World:
    """This process's rank among the launcher's processes (joins their process group once)."""
    return init_world(device, timeout=TEACHER_PASS_TIMEOUT)


def owned_parts(n_parts: int, world: World) -> list[int]:
    """The part numbers (of 0..n_parts-1) this rank computes: those equal to its rank modulo the size."""
    return [p for p in range(n_parts) if p % world.size == world.rank]


def all_done(world: World) -> None:
    """Wait until every rank has finished its parts (no-op in a single process)."""
    barrier(world)


def from_main(value: T, world: World) -> T:
    """Rank 0's ``value`` on every rank (e.g. a summary only rank 0 computed)."""
    if not world.active:
        return value
    box = [value if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def part_written(ordinal: int, world: World) -> None:
    """Call after writing a part; ``ordinal``: its 1-based position among this rank's parts (of
    ``owned_parts``). Honours ``CRASH_ENV``: "1:2" SIGKILLs rank 1 right after its second part."""
    if os.environ.get(CRASH_ENV) == f"{world.rank}:{ordinal}":
        os.kill(os.getpid(), signal.SIGKILL)
