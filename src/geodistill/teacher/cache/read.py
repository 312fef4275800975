"""Reading a cache: ``CachedTeacher`` hands out the stored outputs like ``OnlineTeacher``; a run's config
finds (or first builds) its cache with ``cached_teacher_for``."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import SafetensorError, safe_open

from geodistill.errors import DataError, GeodistillError
from geodistill.losses.kd import IGNORE_INDEX
from geodistill.teacher.cache.build import BuildOptions, build_cache
from geodistill.teacher.cache.fingerprint import teacher_fingerprint
from geodistill.teacher.cache.format import (
    INDEX,
    CacheOptions,
    check_expectations,
    cross_kv_names,
    is_complete,
    lse_name,
    read_index,
    shard_name,
)
from geodistill.teacher.outputs import TeacherOutputs

if TYPE_CHECKING:
    from geodistill.config import Config

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
    def encoder_pool(self) -> int | None:
        """Frames averaged per stored encoder frame (None: all 1500, usable as a shared encoder's output)."""
        return self.index["encoder_pool"]

    @property
    def cross_kv_layers(self) -> tuple[int, ...]:
        """Teacher decoder layers whose cross-attention keys/values the cache holds."""
        return tuple(self.index["cross_kv_layers"])

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

    def __call__(self, batch: dict) -> TeacherOutputs:
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
        )

    def _per_utterance(self, name: str, places: list[_Place]) -> torch.Tensor:
        """(B, ...) stack of a per-utterance tensor (encoder states, cross K/V), in the storage dtype."""
        return torch.stack([self._slices[p.shard][name][p.row : p.row + 1][0] for p in places])


@contextlib.contextmanager
def _on_device(teacher_model, device: str):
    """A loaded teacher moved to ``device`` for the build (a run keeps its teacher on the CPU, where only
    its weights are needed) and moved back afterwards."""
    if teacher_model is None:
        yield None
        return
    from geodistill.models import resolve_device

    model, processor = teacher_model
    home = next(model.parameters()).device
    model.to(resolve_device(device))
    try:
        yield model, processor
    finally:
        model.to(home)


def cached_teacher_for(
    cfg: Config, teacher_model=None, cross_kv_layers: tuple[int, ...] = ()
) -> CachedTeacher:
    """The run's teacher read from ``cfg.teacher_cache``, built first over ``cfg.data.train`` if absent or
    partial (top_k 64, fp16, and the cross-attention K/V of ``cross_kv_layers``; use ``geodistill cache``
    for other choices). A complete cache is used as it is, whichever cross-attention layers it holds.

    teacher_model: the run's loaded (model, processor), when it has one: the cache must then hold this
    teacher's weights (fingerprint) and decoder prompt. Without it the cache must name ``cfg.teacher``.
    A cache for another teacher, data or label settings is refused naming the field.
    """
    from geodistill.data import prompt_ids

    d, out = cfg.data, Path(cfg.teacher_cache)
    if d.train is None:
        raise DataError("data.train: no training data spec given (the teacher cache is built over it)")
    label = {
        "language": d.language,
        "normalise_text": d.normalise_text,
        "min_duration": d.min_duration,
        "max_duration": d.max_duration,
    }
    if not is_complete(out):
        log.info("teacher cache %s: building it over %s (once; later runs and trials reuse it)", out, d.train)
        with _on_device(teacher_model, cfg.train.teacher_device) as teacher:
            options = CacheOptions(temperatures=(cfg.loss.temperature,), cross_kv_layers=cross_kv_layers)
            build = BuildOptions(batch_size=cfg.train.batch_size, device=cfg.train.teacher_device, **label)
            build_cache(teacher or cfg.teacher, d.train, out, options, build)
    expect = {"data": d.train, **label}
    if teacher_model is None:
        expect["teacher"] = cfg.teacher
    else:
        model, processor = teacher_model
        expect["teacher_fingerprint"] = teacher_fingerprint(model)
        expect["prompt"] = prompt_ids(processor, model, language=d.language)
    return CachedTeacher(out, expect, temperature=cfg.loss.temperature)
