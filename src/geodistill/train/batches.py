"""A batch order that can be resumed mid-epoch: the position is just (epoch, batches consumed).

Each epoch is a permutation seeded by (seed, epoch), so a resumed run rebuilds the same order and
skips the consumed batches as index lists, without decoding any audio.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from geodistill.contracts import Batch
from geodistill.data import SpeechDataset
from geodistill.errors import DataError


class EpochBatches(Sampler[list[int]]):
    """Index batches of one epoch, starting after ``start`` batches (the last short batch is kept).

    With ``world`` > 1 processes, rank r takes batches r, r + world, ... and every rank gets the same
    number of batches (the remainder is dropped) so their all-reduces stay in step.
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world: int = 1
    ):
        self.n, self.batch_size, self.seed, self.epoch, self.start = n, batch_size, seed, epoch, start
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=gen).tolist()
        for b in range(self.start, len(self)):
            g = b * self.world + self.rank
            yield order[g * self.batch_size : (g + 1) * self.batch_size]

    def __len__(self) -> int:
        batches = (self.n + self.batch_size - 1) // self.batch_size
        return batches if self.world == 1 else batches // self.world


class BatchStream:
    """Endless batches over epochs, tracking ``(epoch, offset)`` so a checkpoint can resume it exactly."""

    def __init__(
        self,
        dataset: SpeechDataset,
        collate,
        batch_size: int,
        seed: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        epoch: int = 0,
        offset: int = 0,
        rank: int = 0,
        world: int = 1,
    ):
        self.dataset, self.collate, self.batch_size, self.seed = dataset, collate, batch_size, seed
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.epoch, self.offset, self.rank, self.world = epoch, offset, rank, world
        if len(EpochBatches(len(dataset), batch_size, seed, 0, 0, rank, world)) == 0:
            raise DataError(
                f"data.train: {len(dataset)} samples make no batch of {batch_size} for each of {world} ranks"
            )
        self._it: Iterator | None = None

    def _loader(self) -> DataLoader:
        self.dataset.epoch = self.epoch  # the augmentation draws' epoch (workers copy it as they start)
        sampler = EpochBatches(
            len(self.dataset), self.batch_size, self.seed, self.epoch, self.offset, self.rank, self.world
        )
        # A private generator keeps worker seeding from consuming the global torch RNG, which would make a
        # resumed run's dropout masks differ from an uninterrupted run's.
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        return DataLoader(
            self.dataset,
            batch_sampler=sampler,
            collate_fn=self.collate,
            generator=gen,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def __next__(self) -> Batch:
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
