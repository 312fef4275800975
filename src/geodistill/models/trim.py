"""A trimmed output vocabulary (``student.vocab: trimmed``): the LM head computes logits only over the kept
token ids, the rest are -inf, so every id everywhere stays in Whisper's own id space.

Per generated token, tiny's LM head (51,864 x 384) costs more than its four decoder layers together; an
English student emits a small part of that vocabulary. ``kept_ids`` is that part: every id of the training
labels, every special id (<|endoftext|> and all ids above it: languages, tasks, <|notimestamps|>, the
timestamps), the 256 byte-level single-character tokens (any word can still be spelled) and whatever else
the caller adds (a teacher cache's top-k ids), sorted ascending, so the specials keep their order and the
timestamps stay contiguous right after <|notimestamps|> (CTranslate2 assumes timestamp_begin =
notimestamps + 1).

``TrimmedHead`` replaces ``proj_out``: it shares the tied embedding (``weight`` is the very Parameter of
``embed_tokens``, so the saved model is the usual full-size tied Whisper), multiplies by its kept rows
only and places the K logits in a full-size row of -inf. Saved folders keep the ids in ``vocab_kept.json``
(``save_kept``), mark config.json ``geodistill_vocab: "trimmed"`` and list every other id in
generation_config.json's ``suppress_tokens``, so a plain transformers pipeline decodes exactly as the
trimmed student (only slower); ``geodistill.models.loading.load_whisper`` re-installs the head.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers.pre_tokenizers import ByteLevel
from torch import Tensor, nn

from geodistill.errors import ModelLoadError

KEPT_FILE = "vocab_kept.json"  # next to the weights of a trimmed model, and next to its exports
VOCAB_KEY = "geodistill_vocab"  # config.json: "trimmed" (absent: the full vocabulary)
VOCABS = ("full", "trimmed")


def byte_ids(tokenizer) -> list[int]:
    """The ids of the 256 byte-level single-character tokens (GPT-2's byte alphabet)."""
    ids = tokenizer.convert_tokens_to_ids(sorted(ByteLevel.alphabet()))
    return sorted(int(i) for i in ids)


def kept_ids(
    tokenizer, vocab_size: int, labels: Iterable[Iterable[int]], extra: Iterable[int] = ()
) -> list[int]:
    """Sorted unique ids a trimmed student keeps: the ``labels``' ids, every id from <|endoftext|> up to
    ``vocab_size`` (the specials and timestamps), the 256 byte tokens and ``extra``."""
    eot = int(tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    kept = set(range(eot, vocab_size)) | set(byte_ids(tokenizer)) | {int(i) for i in extra}
    for row in labels:
        kept.update(int(i) for i in row)
    return sorted(i for i in kept if 0 <= i < vocab_size)


class TrimmedHead(nn.Module):
    """``proj_out`` over the kept rows of the tied embedding: (..., d) -> (..., V), -inf off the kept ids.

    Training gathers the K rows each forward, so gradients reach the tied embedding. Without gradients
    (generation, validation) the gathered (K, d) matrix is kept and reused until the embedding changes
    (its storage or its in-place version counter: an optimiser step, a ``load_state_dict``), so decoding
    pays K x d per token and not V x d.
    """

    def __init__(self, embedding: nn.Embedding, kept: Sequence[int]):
        super().__init__()
        self.weight = embedding.weight  # the tied Parameter itself: state_dict stays that of a plain Whisper
        vocab = self.weight.shape[0]
        index = torch.as_tensor(list(kept), dtype=torch.long, device=self.weight.device)
        place = torch.full((vocab,), len(kept), dtype=torch.long, device=self.weight.device)
        place[index] = torch.arange(len(kept), device=self.weight.device)
        self.register_buffer("kept", index, persistent=False)  # (K,) kept ids, ascending
        self.register_buffer("place", place, persistent=False)  # (V,) id -> its row among K, or K (-inf)
        self._cached: tuple[tuple, Tensor] | None = None

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def rows(self) -> Tensor:
        """(K, d): the kept rows of the tied embedding (cached when no gradient is wanted)."""
        w = self.weight
        if self.training or torch.is_grad_enabled():
            return w.index_select(0, self.kept)
        key = (w.data_ptr(), w._version, w.device, w.dtype)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, w.index_select(0, self.kept))
        return self._cached[1]

    def forward(self, hidden: Tensor) -> Tensor:
        logits = F.linear(hidden, self.rows())
        off = logits.new_full((*logits.shape[:-1], 1), float("-inf"))
        return torch.cat([logits, off], dim=-1)[..., self.place]

    def extra_repr(self) -> str:
        return f"kept={self.kept.numel()} of {self.out_features}, d={self.in_features}"


def install_trimmed_head(model, kept: Sequence[int]) -> TrimmedHead:
    """Replace a Whisper's ``proj_out`` by a ``TrimmedHead`` over ``kept`` and mark its config."""
    head = TrimmedHead(model.get_decoder().embed_tokens, kept)
    head.train(model.training)
    model.proj_out = head
    setattr(model.config, VOCAB_KEY, "trimmed")
    return head


def untrim(model) -> None:
    """Give a Whisper back its plain ``proj_out`` over the whole vocabulary, tied to the embedding."""
    embedding = model.get_decoder().embed_tokens
    with torch.device("meta"):
        head = nn.Linear(embedding.weight.shape[1], embedding.weight.shape[0], bias=False)
    head.weight = embedding.weight
    model.proj_out = head
    if hasattr(model.config, VOCAB_KEY):
        delattr(model.config, VOCAB_KEY)


def trimmed_kept(model) -> list[int] | None:
    """The kept ids of a Whisper with a ``TrimmedHead`` (None: the full vocabulary)."""
    head = getattr(model, "proj_out", None)
    return head.kept.tolist() if isinstance(head, TrimmedHead) else None


def suppressed(kept: Sequence[int], vocab_size: int, suppress: Iterable[int] = ()) -> list[int]:
    """``suppress`` plus every id outside ``kept``, sorted: a plain model's suppress list that decodes
    exactly as the trimmed head."""
    keep = set(kept)
    return sorted(set(suppress) | {i for i in range(vocab_size) if i not in keep})


def save_kept(folder: Path, kept: Sequence[int], vocab_size: int) -> None:
    """Write ``vocab_kept.json`` into a saved model ``folder`` and add every non-kept id to its
    generation_config.json ``suppress_tokens`` (a plain pipeline then decodes as the trimmed student)."""
    (folder / KEPT_FILE).write_text(json.dumps({"vocab_size": vocab_size, "kept": list(kept)}) + "\n")
    path = folder / "generation_config.json"
    if path.is_file():
        gen = json.loads(path.read_text(encoding="utf-8"))
        gen["suppress_tokens"] = suppressed(kept, vocab_size, gen.get("suppress_tokens") or ())
        path.write_text(json.dumps(gen, indent=2) + "\n", encoding="utf-8")


def read_kept(folder: Path) -> list[int] | None:
    """The kept ids of a trimmed model or export in ``folder`` (None when it has no ``vocab_kept.json``);
    one-line ModelLoadError for a file that is not a sorted, unique list of ids below its vocab_size."""
    path = Path(folder) / KEPT_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kept, size = [int(i) for i in data["kept"]], int(data["vocab_size"])
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelLoadError(f"{path}: unreadable kept-id list ({exc})") from exc
    if not kept or kept != sorted(set(kept)) or kept[0] < 0 or kept[-1] >= size:
        raise ModelLoadError(f"{path}: 'kept' must be sorted unique ids in 0..{size - 1}")
    return kept


def load_trimmed(model, folder: Path) -> None:
    """Re-install the trimmed head of a model loaded from ``folder`` when it holds ``vocab_kept.json``;
    its non-kept ids leave ``suppress_tokens`` again (the head already rules them out, at no cost)."""
    kept = read_kept(folder)
    if kept is None:
        return
    if len(model.get_decoder().embed_tokens.weight) <= kept[-1]:
        raise ModelLoadError(f"{Path(folder) / KEPT_FILE}: ids beyond the model's vocabulary")
    install_trimmed_head(model, kept)
    gen, keep = model.generation_config, set(kept)
    if gen.suppress_tokens:
        gen.suppress_tokens = [t for t in gen.suppress_tokens if t in keep]
