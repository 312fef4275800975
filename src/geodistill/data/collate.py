"""Batches: pad the unpadded samples, build teacher-forcing inputs and masked labels; seeded loaders."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from geodistill.contracts import IGNORE_INDEX, Batch


class WhisperCollator:
    """samples -> batch; None samples (bad files) are dropped.

    Each row has its own prompt: the sample's "prompt" when it carries one (its language, task and
    timestamps: ``SpeechDataset`` with ``prompts``), else ``prompt``. With P_b = len(prompt of b) and T_b =
    text tokens of sample b, L = max_b (P_b + T_b) - 1:
      decoder_input_ids (B, L) = prompt_b + text_b, right-padded with ``pad_id``;
      labels            (B, L) = [-100] * (P_b - 1) + text_b + [eot], right-padded with -100;
    so ``decoder_input_ids[:, i]`` predicts ``labels[:, i]``: the last prompt token predicts the first text
    token, the last text token predicts eot, and the prompt itself is never a target.
    Also "ids" (list[str], B), "input_features" (B, n_mels, 3000), "audio_seconds" (B,), and "audio"
    (list of arrays) / "teacher_features" (B, n_mels_t, 3000) when the samples carry them.

    A batch whose every sample was bad comes back empty: ``{"ids": [], ...}`` with zero-size tensors;
    the training loop skips it (``if not batch["ids"]: continue``).
    """

    def __init__(self, prompt: Sequence[int] | None, pad_id: int):
        if prompt is not None and not prompt:
            raise ValueError("prompt must hold at least <|startoftranscript|>")
        self.prompt = None if prompt is None else [int(t) for t in prompt]
        self.pad_id = int(pad_id)

    def __call__(self, samples: Sequence[dict | None]) -> Batch:
        samples = [s for s in samples if s is not None]
        if not samples:
            empty = torch.zeros(0, 0, dtype=torch.long)
            return {
                "ids": [],
                "input_features": torch.zeros(0, 0, 0),
                "decoder_input_ids": empty,
                "labels": empty.clone(),
                "audio_seconds": torch.zeros(0),
            }
        prompts = [[int(t) for t in s.get("prompt") or self.prompt or []] for s in samples]
        if not all(prompts):
            raise ValueError("a sample without its own prompt, and no default prompt to give it")
        # prompt + longest text (eot is only a label)
        length = max(len(pr) + len(s["labels"]) - 1 for pr, s in zip(prompts, samples, strict=True))
        dec = torch.full((len(samples), length), self.pad_id, dtype=torch.long)
        lab = torch.full((len(samples), length), IGNORE_INDEX, dtype=torch.long)
        for b, (prompt, s) in enumerate(zip(prompts, samples, strict=True)):
            text, p = list(s["labels"]), len(prompt)  # text tokens + eot
            dec[b, : p + len(text) - 1] = torch.tensor(prompt + text[:-1])
            lab[b, p - 1 : p - 1 + len(text)] = torch.tensor(text)
        batch: Batch = {
            "ids": [s["id"] for s in samples],
            "decoder_input_ids": dec,
            "labels": lab,
            "audio_seconds": torch.tensor([float(s["audio_seconds"]) for s in samples]),
        }
        if "input_features" in samples[0]:
            batch["input_features"] = torch.stack([torch.as_tensor(s["input_features"]) for s in samples])
        if "teacher_features" in samples[0]:
            batch["teacher_features"] = torch.stack([torch.as_tensor(s["teacher_features"]) for s in samples])
        if "audio" in samples[0]:
            batch["audio"] = [s["audio"] for s in samples]
        return batch


class LengthGroupedBatches(Sampler[list[int]]):
    """Batches of similar duration (less padding work, steadier memory).

    Shuffled: indices are permuted, cut into pools of ``batch_size * pool`` items, each pool sorted by length
    and cut into batches, and the batch order permuted again (same generator seed -> same epochs).
    Not shuffled: the whole set sorted longest first (evaluation: the slowest batches come first).
    """

    def __init__(self, lengths: Sequence[float], batch_size: int, generator: torch.Generator,
                 shuffle: bool = True, pool: int = 50):  # fmt: skip
        self.lengths, self.batch_size, self.generator = list(lengths), batch_size, generator
        self.shuffle, self.pool = shuffle, pool

    def _batches(self) -> list[list[int]]:
        n = len(self.lengths)
        order = torch.randperm(n, generator=self.generator).tolist() if self.shuffle else list(range(n))
        size = self.batch_size * self.pool if self.shuffle else max(n, 1)
        batches = []
        for start in range(0, n, size):
            group = sorted(order[start : start + size], key=lambda i: -self.lengths[i])
            batches += [group[j : j + self.batch_size] for j in range(0, len(group), self.batch_size)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        ks = (
            torch.randperm(len(batches), generator=self.generator).tolist()
            if self.shuffle
            else range(len(batches))
        )
        for k in ks:
            yield batches[k]

    def __len__(self) -> int:
        size = self.batch_size * self.pool if self.shuffle else max(len(self.lengths), 1)
        n = len(self.lengths)
        return sum(-(-min(size, n - s) // self.batch_size) for s in range(0, n, size))


def make_loader(
    dataset: Dataset,
    collator,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    group_by_length: bool = False,
) -> DataLoader:
    """A DataLoader whose order depends only on ``seed`` (its own generator; the global RNG is untouched).

    ``group_by_length`` needs ``dataset.utts`` with durations (SpeechDataset from load_spec has them).
    """
    gen = torch.Generator().manual_seed(seed)
    common = dict(
        collate_fn=collator,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=gen,
        persistent_workers=False,
    )
    if group_by_length:
        lengths = [u.duration or 0.0 for u in dataset.utts]
        sampler = LengthGroupedBatches(lengths, batch_size, gen, shuffle=shuffle)
        return DataLoader(dataset, batch_sampler=sampler, **common)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, **common)
