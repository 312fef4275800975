"""Fingerprints and names that tie a cache to its teacher and its data: a changed weight, manifest or
spelling of the same path is told apart from a changed setting."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from geodistill.data import parse_spec
from geodistill.models.loading import EMBEDDED


def spec_name(spec: str | Path) -> str:
    """A model spec as recorded: existing paths absolute (the same teacher named from anywhere)."""
    spec = str(spec)
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() and not _is_embedded(spec) else spec


def data_spec_name(spec: str | Path) -> str:
    """A data spec as recorded: ``kind:absolute path`` ("train.jsonl" and "manifest:./train.jsonl" agree)."""

    kind, path = parse_spec(spec)
    return f"{kind}:{path.resolve()}"


def _is_embedded(spec: str) -> bool:

    return spec in EMBEDDED


def teacher_fingerprint(model: torch.nn.Module) -> str:
    """Hash of the shapes and an evenly strided sample of every weight, rounded to fp16.

    The rounding makes the same teacher loaded in fp32 (CPU) or fp16 (GPU) hash the same; 512 samples a
    tensor keeps it fast for large-v2 while any fine-tune (which moves every weight) changes it.
    """
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        flat = p.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 512)][:512]
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update(sample.to("cpu", torch.float16).numpy().tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(utts: list) -> str:
    """Hash of each utterance's id, audio reference, segment and text (a changed manifest changes it)."""
    h = hashlib.sha256()
    for u in utts:
        audio = (
            str(u.audio)
            if isinstance(u.audio, str | Path)
            else hashlib.sha256(np.ascontiguousarray(u.audio).tobytes()).hexdigest()
        )
        h.update(json.dumps([u.id, audio, u.offset, u.duration, u.text]).encode())
    return h.hexdigest()[:16]
