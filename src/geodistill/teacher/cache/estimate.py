"""How large a cache will be, before a byte of it is written, and whether the disk (and ``--max-size``)
allow it.

Every stored tensor is either per token (log-probs, logsumexp, decoder states: ``n_tokens`` rows a shard)
or per utterance (encoder states, cross-attention K/V), with the row shapes ``format._field_shapes`` gives
the writer, so the shard bytes are exact up to each safetensors header (tensor names, offsets and the
shard's ids, estimated here). ``fixed`` covers index.json and the saved processor.

``per_hour`` turns the same arithmetic into GB per hour of speech for a named teacher shape, from an
assumed utterance length and speaking rate: the table in docs/teacher-cache.md (``scripts/cache_sizes.py``).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from geodistill.errors import StorageError
from geodistill.teacher.cache.format import PER_UTTERANCE, CacheOptions, _field_shapes

TENSOR_HEADER_BYTES = 110  # a safetensors header entry: name, dtype, shape and offsets, as JSON
MARGIN_FRACTION = 0.10  # free disk asked beyond the estimate: its own error (tested within 10 %) ...
MARGIN_BYTES = 256 * 2**20  # ... and at least this much left for everything else on the disk

# Teacher shapes that decide the size (openai/whisper's model dimensions).
TEACHERS = {
    "tiny": {"d_model": 384, "decoder_attention_heads": 6, "vocab_size": 51865},
    "base": {"d_model": 512, "decoder_attention_heads": 8, "vocab_size": 51865},
    "small": {"d_model": 768, "decoder_attention_heads": 12, "vocab_size": 51865},
    "large-v2": {"d_model": 1280, "decoder_attention_heads": 20, "vocab_size": 51865},
    "large-v3": {"d_model": 1280, "decoder_attention_heads": 20, "vocab_size": 51866},
}
# LibriSpeech train-clean-100: 28,539 utterances in 100.6 h (12.7 s each), ~2.7 words/s, ~1.3 Whisper BPE
# tokens a word, + a 4-token prompt (multilingual). Assumed, for the per-hour table only.
UTTERANCE_SECONDS = 12.7
TOKENS_PER_SECOND = 3.5
PROMPT_TOKENS = 4


@dataclass(frozen=True)
class SizeEstimate:
    n_utterances: int
    n_tokens: int  # decoder positions stored (prompt + text per utterance)
    shard_bytes: int  # every shard file, headers included
    fixed_bytes: int  # index.json + processor/

    @property
    def total(self) -> int:
        return self.shard_bytes + self.fixed_bytes

    @property
    def per_utterance(self) -> float:
        return self.shard_bytes / max(1, self.n_utterances)

    def line(self) -> str:
        return (
            f"teacher cache: about {human(self.total)} for {self.n_utterances:,} utterances "
            f"({human(self.per_utterance)} each, {self.n_tokens:,} decoder positions)"
        )


def human(n: float) -> str:
    """Bytes as a short binary-unit string: 1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def row_bytes(opts: CacheOptions, config) -> tuple[int, int]:
    """(bytes a decoder position, bytes an utterance) that a shard stores, from the writer's shapes."""
    token, utterance = 0, 0
    for name, (tail, dtype) in _field_shapes(opts, config).items():
        size = math.prod(tail) * dtype.itemsize
        if name.startswith(PER_UTTERANCE):
            utterance += size
        else:
            token += size
    return token, utterance


def estimate_size(
    opts: CacheOptions,
    config,
    token_counts: list[int],
    ids: list[str],
    shard_size: int,
    fixed_bytes: int = 0,
) -> SizeEstimate:
    """The size of a cache of ``len(token_counts)`` utterances; ``token_counts``: stored decoder positions
    (prompt + text tokens) of each, ``ids`` their ids (each shard's header lists them)."""
    token, utterance = row_bytes(opts, config)
    n_tensors = len(_field_shapes(opts, config))
    n_shards = math.ceil(len(ids) / shard_size)
    headers = n_shards * (8 + 64 + n_tensors * TENSOR_HEADER_BYTES)  # length prefix, metadata keys
    headers += sum(len(json.dumps(i)) + 2 for i in ids) + sum(len(str(n)) + 2 for n in token_counts)
    body = token * sum(token_counts) + utterance * len(token_counts)
    return SizeEstimate(len(ids), sum(token_counts), body + headers, fixed_bytes)


def per_hour(
    teacher: str,
    opts: CacheOptions,
    utterance_seconds: float = UTTERANCE_SECONDS,
    tokens_per_second: float = TOKENS_PER_SECOND,
) -> float:
    """Bytes of shards per hour of speech for a ``TEACHERS`` shape (decoder states and log-probs per
    token, encoder states and K/V per utterance); assumptions in the module constants."""
    config = SimpleNamespace(**TEACHERS[teacher], max_source_positions=1500)
    token, utterance = row_bytes(opts, config)
    n = 3600 / utterance_seconds
    return n * (utterance + token * (PROMPT_TOKENS + tokens_per_second * utterance_seconds))


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist)."""
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_budget(out: Path, estimate: SizeEstimate, max_size: int | None) -> None:
    """Refuse in one line a cache larger than ``max_size`` bytes, or one the disk under ``out`` has no room
    for (the rest of the estimate, beyond what ``out`` already holds, + a margin)."""
    if max_size is not None and estimate.total > max_size:
        raise StorageError(
            f"--max-size {human(max_size)}: below this cache's estimated {human(estimate.total)} "
            f"({human(estimate.per_utterance)} x {estimate.n_utterances:,} utterances); raise it or store "
            "less (--no-encoder, --encoder-pool, a smaller --top-k, no --full-logits or --cross-kv-layers)"
        )
    needed = max(0, estimate.total - folder_bytes(out))
    margin = max(MARGIN_BYTES, int(MARGIN_FRACTION * needed))
    where = out if out.exists() else next(p for p in out.parents if p.exists())
    free = shutil.disk_usage(where).free
    if free < needed + margin:
        raise StorageError(
            f"{out}: the teacher cache needs about {human(needed)} more (+ {human(margin)} margin) but the "
            f"disk has {human(free)} free; free some space, choose another --out, or store less "
            "(--no-encoder, --encoder-pool, no --full-logits or --cross-kv-layers)"
        )
