"""Reading a cache: ``CachedTeacher`` hands out the stored outputs like ``OnlineTeacher`` (a run's config
finds, or first builds, its cache with ``geodistill.teacher.factory.cached_teacher_for``)."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from geodistill.contracts import IGNORE_INDEX, Batch, TeacherOffer, TeacherOutputs
from geodistill.errors import GeodistillError
from geodistill.teacher.cache.format import (
    INDEX,
    check_expectations,
    cross_kv_names,
    lse_name,
    read_index,
    shard_name,
)

log = logging.getLogger("geodistill")


@dataclass(frozen=True)
class _Place:
    shard: int  # which shard file
    row: int  # the utterance's row in the shard (encoder states)
    start: int  # its first token in the shard's token-concatenated tensors
    length: int  # its token count (prompt + text)


class CachedTeacher:
    """Teacher outputs read from a complete cache: ``teacher(batch) -> TeacherOutputs`` like OnlineTeacher.

    Looks up ``batch["ids"]``, checks each cached decoder input equals the batch's, and pads to the batch's
    L (padding positions carry a uniform distribution and zero states; every loss masks them). Returns
    fp32 CPU tensors, except encoder_hidden (B, T, D_t) in the storage dtype: the loop casts it on device.
    ``temperature``: the run's KL temperature; when the cache stored logsumexp at it, that one is returned
    (with ``logsumexp_temperature``) so the top-k KL is exact, else the T = 1 one (the loss estimates).
    """

    def __init__(self, cache_dir: str | Path, expect: dict | None = None, temperature: float | None = None):
        self.cache_dir = Path(cache_dir)
        index = read_index(self.cache_dir)
        if index is None:
            raise GeodistillError(
                f"{self.cache_dir}: no teacher cache here (no {INDEX}); build one with "
                "`geodistill cache` or set teacher_cache to a new folder in a training run"
            )
        if index.get("status") != "complete":
            raise GeodistillError(
                f"{self.cache_dir}: teacher cache is incomplete (its build was interrupted); "
                "run the same `geodistill cache` command again to finish it"
            )
        check_expectations(index, expect or {}, self.cache_dir)
        self.index = index
        self.temperature = 1.0  # of the logsumexp handed out
        if temperature is not None and float(temperature) in index["temperatures"]:
            self.temperature = float(temperature)
        elif temperature is not None and float(temperature) != 1.0 and not index["full_logits"]:
            log.warning(
                "teacher cache %s has no logsumexp at T=%g (stored: 1, %s): the top-k KL will use an "
                "estimate of the tail; rebuild with temperatures=(%g,) for the exact one",
                self.cache_dir,
                temperature,
                index["temperatures"],
                temperature,
            )
        self._files, self._slices, self._where = [], [], {}
        for s in range(index["n_shards"]):
            self._open_shard(s)

    def _open_shard(self, s: int) -> None:
        path = self.cache_dir / shard_name(s)
        try:
            f = safe_open(str(path), framework="pt")  # memory-mapped: slices read only their own pages
            meta = f.metadata() or {}
            ids, lengths = json.loads(meta["ids"]), json.loads(meta["lengths"])
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise GeodistillError(
                f"{path}: unreadable teacher cache shard ({exc}); rebuild the cache"
            ) from exc
        self._files.append(f)
        self._slices.append({name: f.get_slice(name) for name in f.keys()})
        start = 0
        for row, (uid, n) in enumerate(zip(ids, lengths, strict=True)):
            self._where[uid] = _Place(s, row, start, n)
            start += n

    @property
    def offer(self) -> TeacherOffer:
        """What the stored outputs carry besides logits (the ``TeacherProvider`` contract)."""
        return TeacherOffer(
            reads_features=False,
            encoder_states=bool(self.index["store_encoder"]),
            encoder_pool=self.index["encoder_pool"],
            cross_kv_layers=tuple(self.index["cross_kv_layers"]),
        )

    @property
    def teacher_config(self) -> dict:
        """The teacher's HF config (d_model, layers, vocab_size, ...) without loading the teacher."""
        return self.index["teacher_config"]

    @property
    def processor_dir(self) -> Path:
        """The teacher's saved processor (``WhisperProcessor.from_pretrained`` reads it)."""
        return self.cache_dir / "processor"

    def __len__(self) -> int:
        return len(self._where)

    def _place(self, uid: str, dec: torch.Tensor, labels: torch.Tensor) -> _Place:
        place = self._where.get(uid)
        if place is None:
            raise GeodistillError(
                f"{self.cache_dir}: utterance {uid!r} is not in the teacher cache (built over "
                f"{self.index['data']}); rebuild the cache for this data"
            )
        n = place.length
        cached = self._slices[place.shard]["decoder_input_ids"][place.start : place.start + n]
        same = (
            n <= dec.shape[0]
            and torch.equal(dec[:n].long(), cached.long())
            and bool((labels[n:] == IGNORE_INDEX).all())
            and int(labels[n - 1]) != IGNORE_INDEX
        )
        if not same:
            raise GeodistillError(
                f"{self.cache_dir}: utterance {uid!r}: the batch's label tokens differ from the "
                "cached ones (text, tokenizer, prompt or normalise_text changed); rebuild the cache"
            )
        return place

    def __call__(self, batch: Batch) -> TeacherOutputs:
        """batch: a WhisperCollator batch (ids, decoder_input_ids (B, L), labels (B, L)) -> TeacherOutputs."""
        dec, labels = batch["decoder_input_ids"], batch["labels"]
        places = [self._place(uid, dec[i], labels[i]) for i, uid in enumerate(batch["ids"])]
        (b, length), k = dec.shape, self.index["top_k"]
        vocab, width = self.index["vocab_size"], self.index["teacher_config"]["d_model"]
        lse = torch.full((b, length), math.log(vocab))  # padding: a uniform teacher, consistent with lse
        values = torch.zeros(b, length, k)
        indices = torch.arange(k).expand(b, length, k).clone()
        hidden = torch.zeros(b, length, width)
        logits = torch.zeros(b, length, vocab) if self.index["full_logits"] else None
        lse_t = lse.clone() if self.temperature != 1.0 else lse  # padding: logsumexp(0 / T) = log V too
        extra_ids = tuple(self.index["extra_ids"])
        extra = torch.zeros(b, length, len(extra_ids)) if extra_ids else None
        for i, p in enumerate(places):
            get, span, n = self._slices[p.shard], slice(p.start, p.start + p.length), p.length
            lse[i, :n] = get["logsumexp"][span]
            values[i, :n] = get["topk_logprobs"][span].float() + lse[i, :n, None]  # raw logits again
            indices[i, :n] = get["topk_indices"][span].long()
            hidden[i, :n] = get["decoder_hidden"][span].float()
            if logits is not None:
                logits[i, :n] = get["logprobs"][span].float() + lse[i, :n, None]
            if lse_t is not lse:
                lse_t[i, :n] = get[lse_name(self.temperature)][span]
            if extra is not None:
                extra[i, :n] = get["extra_logits"][span].float()
        encoder = self._per_utterance("encoder_hidden", places) if self.index["store_encoder"] else None
        cross_kv = {
            j: tuple(self._per_utterance(name, places) for name in cross_kv_names(j))
            for j in self.index["cross_kv_layers"]
        }
        return TeacherOutputs(
            logits=logits,
            topk_values=values,
            topk_indices=indices,
            logsumexp=lse_t,
            decoder_hidden=hidden,
            encoder_hidden=encoder,
            cross_kv=cross_kv or None,
            logsumexp_temperature=self.temperature,
            extra_logits=extra,
            extra_ids=extra_ids,
        )

    def topk_ids(self, min_prob: float = 0.0) -> list[int]:
        """Every vocabulary id the cache stores among its top-k with a teacher probability of at least
        ``min_prob`` somewhere (any utterance, any position), sorted: the teacher's likely alternatives, which
        a trimmed student's vocabulary keeps (an id it drops leaves the top-k KL, see losses.kd)."""
        ids: set[int] = set()
        floor = math.log(min_prob) if min_prob > 0 else -math.inf
        for f in self._files:
            indices = f.get_tensor("topk_indices").long()  # stored as uint16 or int32
            ids.update(indices[f.get_tensor("topk_logprobs").float() >= floor].unique().tolist())
        return sorted(int(i) for i in ids)

    def _per_utterance(self, name: str, places: list[_Place]) -> torch.Tensor:
        """(B, ...) stack of a per-utterance tensor (encoder states, cross K/V), in the storage dtype."""
        return torch.stack([self._slices[p.shard][name][p.row : p.row + 1][0] for p in places])
