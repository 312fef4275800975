"""The cache's on-disk format: file and tensor names, what each shard holds (``CacheOptions``), the index,
and writing / checking shards."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from geodistill.errors import GeodistillError, StorageError
from geodistill.outdir import reason
from geodistill.teacher.cache.fingerprint import data_spec_name, spec_name

log = logging.getLogger("geodistill")

FORMAT = 1  # bump when the layout changes: an older cache is then refused, not misread
INDEX = "index.json"
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
# Settings that decide a cache's content: resuming or reusing a cache with any of them changed is refused.
CONTENT_KEYS = (
    "format",
    "teacher_fingerprint",
    "data_fingerprint",
    "ids",
    "prompt",
    "language",
    "task",
    "timestamp_probability",
    "timestamp_seed",
    "normalise_text",
    "min_duration",
    "max_duration",
    "top_k",
    "full_logits",
    "store_encoder",
    "encoder_pool",
    "dtype",
    "shard_size",
    "temperatures",
    "cross_kv_layers",
    "extra_ids",
)


@dataclass(frozen=True)
class CacheOptions:
    """What a cache stores. Every field is recorded in index.json; reusing a cache needs them all equal."""

    top_k: int = 64  # log-probs kept per position
    full_logits: bool = False  # keep the full-vocabulary log-probs too
    store_encoder: bool = False  # keep the last encoder states: only for a run that reads them (a frozen
    # encoder shared with the teacher, an encoder hidden loss); 1500 x D values an utterance, most of a cache
    encoder_pool: int | None = None  # average encoder frames in windows of this many (3: 1500 -> 500)
    dtype: str = "float16"  # storage dtype of log-probs and hidden states, a STORAGE_DTYPES key
    temperatures: tuple[float, ...] = (2.0,)  # extra T with logsumexp(z / T) stored (exact top-k KL at T)
    cross_kv_layers: tuple[int, ...] = ()  # teacher decoder layers whose cross-attention K/V are stored
    # teacher ids whose raw logits are stored per token (set by build_cache: the languages a 99-language
    # student vocabulary lacks, large-v3's <|yue|>, for the exact KL over the shared ids)
    extra_ids: tuple[int, ...] = ()

    @property
    def storage_dtype(self) -> torch.dtype:
        """``dtype`` as a torch dtype (check it is a STORAGE_DTYPES key first)."""
        return STORAGE_DTYPES[self.dtype]

    def normalised(self) -> CacheOptions:
        """Temperatures other than T = 1 (always stored) and layers, sorted without repeats, as recorded."""
        return replace(
            self,
            temperatures=tuple(sorted({float(t) for t in self.temperatures} - {1.0})),
            cross_kv_layers=tuple(sorted({int(j) for j in self.cross_kv_layers})),
        )


def lse_name(temperature: float) -> str:
    """Tensor name of the full-vocabulary logsumexp(z / T) stored for temperature T (T = 1: "logsumexp")."""
    return "logsumexp" if float(temperature) == 1.0 else f"logsumexp_t{float(temperature):g}"


def cross_kv_names(layer: int) -> tuple[str, str]:
    """Tensor names of teacher decoder layer ``layer``'s stored cross-attention keys and values."""
    return f"cross_k.{layer}", f"cross_v.{layer}"


def shard_name(s: int) -> str:
    return f"shard-{s:05d}.safetensors"


def _show(value) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"[{len(value)} items: {', '.join(map(str, value[:3]))}, ...]"
    return repr(value)


def check_fields(found: dict, expect: dict, where: Path, what: str = "teacher cache") -> None:
    """Raise a one-line GeodistillError naming the first field whose value differs between the two."""
    for key, want in expect.items():
        have = found.get(key)
        if have != want:
            raise GeodistillError(
                f"{where}: {what} does not match this run: {key} is {_show(have)} in the cache but "
                f"{_show(want)} here (rebuild the cache into another folder, or restore the setting)"
            )


def read_index(cache_dir: str | Path) -> dict | None:
    """The cache's index.json, or None when there is none."""
    path = Path(cache_dir) / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GeodistillError(f"{path}: unreadable teacher cache index ({exc})") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise GeodistillError(f"{path}: not a geodistill teacher cache of format {FORMAT}")
    index.setdefault("cross_kv_layers", [])  # caches written before cross-attention K/V could be stored
    # caches written before per-utterance prompts: every row transcribed, without timestamps
    index.setdefault("task", "transcribe")
    index.setdefault("timestamp_probability", 0.0)
    index.setdefault("timestamp_seed", None)
    index.setdefault("extra_ids", [])
    return index


def is_complete(cache_dir: str | Path) -> bool:
    index = read_index(cache_dir)
    return index is not None and index.get("status") == "complete"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _index_dtype(vocab: int) -> torch.dtype:
    return torch.uint16 if vocab <= 65536 else torch.int32


def _field_shapes(opts: CacheOptions, config) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Per-row tail shape and dtype of every stored tensor (so an all-bad shard still has its tensors)."""
    d, v = config.d_model, config.vocab_size
    fields = {
        "decoder_input_ids": ((), torch.int32),
        "topk_logprobs": ((opts.top_k,), opts.storage_dtype),
        "topk_indices": ((opts.top_k,), _index_dtype(v)),
        "logsumexp": ((), torch.float32),
        "decoder_hidden": ((d,), opts.storage_dtype),
    }
    for t in opts.temperatures:
        fields[lse_name(t)] = ((), torch.float32)
    if opts.extra_ids:
        fields["extra_logits"] = ((len(opts.extra_ids),), torch.float32)
    if opts.full_logits:
        fields["logprobs"] = ((v,), opts.storage_dtype)
    if opts.store_encoder:
        fields["encoder_hidden"] = (
            (config.max_source_positions // (opts.encoder_pool or 1), d),
            opts.storage_dtype,
        )
    heads = config.decoder_attention_heads
    for j in opts.cross_kv_layers:
        for name in cross_kv_names(j):
            fields[name] = ((heads, config.max_source_positions, d // heads), opts.storage_dtype)
    return fields


PER_UTTERANCE = ("encoder_hidden", "cross_k.", "cross_v.")  # stacked by utterance, not by token


def write_shard(path: Path, ids: list[str], rows: list[dict], skipped: list[str], fields: dict) -> None:
    """Concatenate the rows' tokens (encoder states: stack the utterances) and write the shard atomically."""
    tensors = {}
    for name, (tail, dtype) in fields.items():
        parts = [r[name] for r in rows]
        if not parts:
            tensors[name] = torch.zeros((0, *tail), dtype=dtype)
        else:
            tensors[name] = torch.stack(parts) if name.startswith(PER_UTTERANCE) else torch.cat(parts)
    meta = {
        "ids": json.dumps(ids),
        "lengths": json.dumps([len(r["decoder_input_ids"]) for r in rows]),
        "skipped": json.dumps(skipped),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        with open(tmp, "rb") as f:  # on disk before the rename makes the shard count as done
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, SafetensorError) as exc:  # e.g. disk full: no half-written temp left behind
        tmp.unlink(missing_ok=True)
        raise StorageError(f"{path}: cannot write the shard ({reason(exc)})") from None


def shard_done(path: Path, ids: list[str]) -> bool:
    """True when ``path`` is a readable shard holding exactly ``ids`` (as cached or as skipped)."""
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        found = json.loads(meta["ids"]) + json.loads(meta["skipped"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        log.warning("teacher cache: %s is unreadable (%s); recomputing it", path, exc)
        return False
    return sorted(found) == sorted(ids)


def check_expectations(index: dict, expect: dict, where: Path) -> None:
    """Refuse a cache made for another run. ``expect`` keys are index fields (teacher, teacher_fingerprint,
    data, prompt, language, normalise_text, min_duration, max_duration, top_k, ...); given a fingerprint,
    the teacher spec itself may differ (the same weights reached by another path)."""
    expect = dict(expect)
    if "teacher_fingerprint" in expect:
        expect.pop("teacher", None)
    if "teacher" in expect:
        expect["teacher"] = spec_name(expect["teacher"])
    if "data" in expect:
        expect["data"] = data_spec_name(expect["data"])
    if "prompt" in expect:
        expect["prompt"] = list(expect["prompt"])
    check_fields(index, expect, where)
