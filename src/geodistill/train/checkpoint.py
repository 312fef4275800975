"""Checkpoints that survive a crash mid-write and resume a run exactly.

``save_checkpoint`` writes to a temp file in the same folder, fsyncs it, then renames it over
``checkpoint.pt`` (atomic on POSIX): a kill at any moment leaves either the old or the new file, and a
failed write (disk full) removes the temp file and is a one-line error that leaves the old file as it was.
Everything stored is tensors and plain Python values, so ``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from geodistill.errors import GeodistillError, StorageError
from geodistill.outdir import reason

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) generator states, as weights_only-safe values."""
    # The legacy tuple (get_state's default); numpy's stub types a call without legacy= as the dict form.
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    kind, keys, pos, has_gauss, gauss = legacy
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.copy()),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy(), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Only the parameters that train (adapters, projector, unfrozen layers): frozen ones are rebuilt."""
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


def assert_finite(module: torch.nn.Module) -> None:
    bad = [n for n, p in module.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
    if bad:
        raise GeodistillError(f"refusing to save non-finite parameters: {', '.join(bad[:5])}")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` to ``path`` (temp file + fsync + rename, then fsync the folder)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
        tmp.unlink(missing_ok=True)
        kept = "the previous checkpoint is intact" if path.exists() else "no checkpoint was written"
        raise StorageError(f"{path}: cannot write the checkpoint ({reason(exc)}); {kept}") from None
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The saved state, or None if there is none; a damaged file is a clear error, never a silent restart."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise GeodistillError(
            f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc}); move it away to start over"
        ) from None


def load_trainable(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Copy saved trainable tensors into ``module``; any name or shape mismatch is an error."""
    params = dict(module.named_parameters())
    expected = {n for n, p in params.items() if p.requires_grad}
    if set(state) != expected:
        extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
        raise GeodistillError(
            f"{where}: checkpoint does not match this model (unexpected {extra[:3]}, "
            f"missing {missing[:3]}); was the student or LoRA config changed?"
        )
    with torch.no_grad():
        for name, tensor in state.items():
            if params[name].shape != tensor.shape:
                raise GeodistillError(
                    f"{where}: {name} has shape {tuple(tensor.shape)} in the checkpoint, "
                    f"{tuple(params[name].shape)} in the model"
                )
            params[name].copy_(tensor)
