"""Checking a cache's parts before trusting them: the processor folder and every shard's header.

``build_cache`` runs these on every call, so a rerun repairs what a kill or a damaged disk left behind
(an empty ``processor/``, a truncated or foreign shard) instead of returning a cache that ``train`` then
refuses. The checks read only headers (safetensors' JSON header: names, dtypes, shapes, metadata), never
the tensors, so verifying a large cache costs milliseconds a shard.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from geodistill.errors import StorageError
from geodistill.outdir import reason
from geodistill.teacher.cache.format import PER_UTTERANCE, shard_name

PROCESSOR = "processor"
# files without which the processor folder does not load: the feature extractor's settings (transformers 5
# writes them into processor_config.json, earlier versions into preprocessor_config.json) and the tokenizer's
PROCESSOR_FILES = (("processor_config.json", "preprocessor_config.json"), ("tokenizer_config.json",))
SAFETENSORS_DTYPES = {
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.int32: "I32",
    torch.uint16: "U16",
}


def processor_ok(out: Path) -> bool:
    """True when ``out/processor`` holds the files a processor needs to load, none of them empty."""
    folder = out / PROCESSOR

    def present(name: str) -> bool:
        return (folder / name).is_file() and (folder / name).stat().st_size > 0

    return all(any(present(name) for name in choices) for choices in PROCESSOR_FILES)


def save_processor(processor, out: Path) -> None:
    """Write ``out/processor`` whole: into a temp folder, then renamed over any damaged one."""
    tmp, final = out / f".{PROCESSOR}.tmp", out / PROCESSOR
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        processor.save_pretrained(str(tmp))
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises a bare Exception on a full disk
        shutil.rmtree(tmp, ignore_errors=True)
        raise StorageError(f"{final}: cannot write the processor ({reason(exc)})") from exc
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def shard_problem(path: Path, ids: list[str], fields: dict) -> str | None:
    """What is wrong with the shard at ``path`` for utterances ``ids`` (None: it is whole and right).

    fields: name -> (per-row tail shape, dtype), as ``format._field_shapes``. Checks that the file opens,
    that it accounts for exactly ``ids`` (cached or skipped), and that every field has its dtype, its tail
    shape and as many rows as the shard's tokens (encoder states / cross K, V: as its utterances).
    """
    if not path.is_file():
        return "missing"
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            kept, lengths = json.loads(meta["ids"]), json.loads(meta["lengths"])
            if sorted(kept + json.loads(meta["skipped"])) != sorted(ids):
                return "holds other utterances than the index lists"
            for name, (tail, dtype) in fields.items():
                if name not in f.keys():
                    return f"has no {name}"
                part = f.get_slice(name)
                rows = len(kept) if name.startswith(PER_UTTERANCE) else sum(lengths)
                want = [rows, *tail]
                if part.get_shape() != want or part.get_dtype() != SAFETENSORS_DTYPES.get(dtype):
                    return f"{name} is {part.get_dtype()} {part.get_shape()}, expected {want}"
    except (SafetensorError, OSError, KeyError, ValueError, TypeError) as exc:
        return f"unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    return None


def damaged_parts(out: Path, index: dict, fields: dict) -> list[str]:
    """The parts of the cache in ``out`` that are not as ``index`` describes them ("processor/", shard
    names with the reason); empty when the cache is whole."""
    bad = [] if processor_ok(out) else [f"{PROCESSOR}/ (incomplete)"]
    ids, size = index["ids"], index["shard_size"]
    for s in range(math.ceil(len(ids) / size)):
        problem = shard_problem(out / shard_name(s), ids[s * size : (s + 1) * size], fields)
        if problem is not None:
            bad.append(f"{shard_name(s)} ({problem})")
    return bad
