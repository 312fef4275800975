"""A batch order that can be resumed mid-epoch: the position is just (epoch, batches consumed).

Each epoch is a permutation seeded by (seed, epoch), so a resumed run rebuilds the same order and
skips the consumed batches as index lists, without decoding any audio.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochBatches(Sampler[list[int]]):
    """Index batches of one epoch, starting after ``start`` batches (the last short batch is kept)."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0):
        self.n, self.batch_size, self.seed, self.epoch, self.start = n, batch_size, seed, epoch, start

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        for b in range(self.start, len(self)):
            yield order[b * self.batch_size : (b + 1) * self.batch_size]

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size


class BatchStream:
    """Endless batches over epochs, tracking ``(epoch, offset)`` so a checkpoint can resume it exactly."""

    def __init__(self, dataset: Dataset, collate, batch_size: int, seed: int, num_workers: int = 0,
                 pin_memory: bool = False, epoch: int = 0, offset: int = 0):
        self.dataset, self.collate, self.batch_size, self.seed = dataset, collate, batch_size, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.epoch, self.offset = epoch, offset
        self._it: Iterator | None = None

    def _loader(self) -> DataLoader:
        sampler = EpochBatches(len(self.dataset), self.batch_size, self.seed, self.epoch, self.offset)
        # A private generator keeps worker seeding from consuming the global torch RNG, which would make a
        # resumed run's dropout masks differ from an uninterrupted run's.
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate, generator=gen,
                          num_workers=self.num_workers, pin_memory=self.pin_memory)

    def __next__(self) -> dict:
        if self._it is None:
            self._it = iter(self._loader())
        try:
            batch = next(self._it)
        except StopIteration:
            self.epoch, self.offset, self._it = self.epoch + 1, 0, None
            return next(self)
        self.offset += 1
        return batch

    def __iter__(self) -> BatchStream:
        return self

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}
