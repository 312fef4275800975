"""Teacher-forced hidden states of teacher and students on the same utterances, on the teacher's sphere.

The geodesic loss compares ``projector(student state)`` with the teacher's state as directions, so the
report does the same: student states go through the run's RiemannianProjector (teacher width, unit norm)
and teacher states are L2-normalised. Rows of teacher and student arrays are pairs (same utterance, same
position), which is what the latent maps join with lines and the distance histograms measure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from geodistill.config import Config
from geodistill.contracts import IGNORE_INDEX, Batch
from geodistill.data import (
    BadSamples,
    SpeechDataset,
    WhisperCollator,
    load_spec,
    prompt_ids,
    split_by_speaker,
)
from geodistill.errors import DataError, GeodistillError, ModelLoadError
from geodistill.models.forward import forward_states
from geodistill.models.projector import RiemannianProjector

SIDES = ("encoder", "decoder")
ENCODER_SECONDS = 30.0  # Whisper's window: every encoder sees 30 s (padded), e.g. 1500 frames
MAX_FRAMES_PER_UTT = 150  # encoder frames kept per utterance (evenly spaced): bounds memory and t-SNE time
PROJECTOR_FILE = "projector.safetensors"


@dataclass(frozen=True)
class SideStates:
    """Unit-norm states of one side (encoder or decoder) at the valid positions of every utterance."""

    states: np.ndarray  # (N, D) float32, rows of all utterances concatenated in batch order
    owner: np.ndarray  # (N,) int: index of the utterance each row belongs to

    def pooled(self) -> np.ndarray:
        """(U, D): mean over each utterance's valid positions, re-normalised onto the sphere."""
        n_utts = int(self.owner.max()) + 1 if len(self.owner) else 0
        sums = np.zeros((n_utts, self.states.shape[1]), dtype=np.float64)
        np.add.at(sums, self.owner, self.states)
        return (sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def report_utterances(cfg: Config, data: str | None) -> tuple[list, str]:
    """(utterances, description): ``data`` if given, else the run's validation data as training built it."""
    d = cfg.data
    bad = BadSamples(None)
    if data is not None:
        return load_spec(data, bad=bad, min_duration=d.min_duration, max_duration=d.max_duration), str(data)
    if d.val:
        return load_spec(d.val, bad=bad, min_duration=d.min_duration, max_duration=d.max_duration), str(d.val)
    if not d.train:
        raise DataError("report: the run's config has no data.train or data.val; pass data (--data SPEC)")
    utts = load_spec(d.train, bad=bad, min_duration=d.min_duration, max_duration=d.max_duration)
    _, val = split_by_speaker(utts, d.val_fraction, cfg.train.seed)
    return val, f"validation split of {d.train} (val_fraction {d.val_fraction}, seed {cfg.train.seed})"


def make_batches(
    cfg: Config, utts: list, processor, model, n: int, batch_size: int = 8
) -> tuple[list[Batch], list]:
    """Teacher-forcing batches (WhisperCollator format) of the first ``n`` usable utterances, and those."""
    dataset = SpeechDataset(utts, processor, bad=BadSamples(None), normalise_text=cfg.data.normalise_text)
    collate = WhisperCollator(
        prompt_ids(processor, model, language=cfg.data.language), processor.tokenizer.pad_token_id
    )
    samples: list[dict] = []
    used = []
    for i in range(len(dataset)):
        if len(samples) == n:
            break
        sample = dataset[i]
        if sample is not None:
            samples.append(sample)
            used.append(utts[i])
    if not samples:
        raise DataError(f"report: none of the {len(utts)} utterances is usable")
    return [collate(samples[i : i + batch_size]) for i in range(0, len(samples), batch_size)], used


def load_projectors(folder: Path) -> nn.ModuleDict:
    """The trained RiemannianProjectors saved with a student ({} when the run trained none)."""
    path = folder / PROJECTOR_FILE
    if not path.is_file():
        return nn.ModuleDict()
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise ModelLoadError(f"{path}: unreadable projector weights ({exc})") from None
    projectors = nn.ModuleDict()
    for side in SIDES:
        weight = state.get(f"{side}.linear.weight")
        if weight is None:
            continue
        if weight.dim() != 2 or f"{side}.linear.bias" not in state:
            raise ModelLoadError(f"{path}: '{side}.linear' is not a Linear layer's weight and bias")
        projectors[side] = RiemannianProjector(weight.shape[1], weight.shape[0])
    unknown = set(state) - set(projectors.state_dict())
    if unknown or not projectors:
        raise ModelLoadError(
            f"{path}: unexpected keys {sorted(unknown)[:4] or sorted(state)[:4]} "
            "(expected decoder./encoder.linear.weight/bias)"
        )
    projectors.load_state_dict(state)
    return projectors.eval()


def initial_projectors(trained: nn.ModuleDict, student_width: int, seed: int) -> nn.ModuleDict:
    """Projectors as training started: identity for equal widths, else nn.Linear's seeded random init."""
    torch.manual_seed(seed)
    return nn.ModuleDict(
        {
            side: RiemannianProjector(student_width, cast(RiemannianProjector, p).linear.out_features)
            for side, p in trained.items()
        }
    ).eval()


def spaced_frames(valid: int) -> torch.Tensor:
    """Evenly spaced indices of the first ``valid`` (>= 1) frames, at most MAX_FRAMES_PER_UTT of them."""
    return torch.linspace(0, valid - 1, min(valid, MAX_FRAMES_PER_UTT)).round().long()


def _frame_index(seconds: float, n_frames: int) -> torch.Tensor:
    """Evenly spaced indices of encoder frames that cover audio (not the 30 s padding)."""
    return spaced_frames(max(1, min(n_frames, math.ceil(seconds * n_frames / ENCODER_SECONDS))))


def _side_rows(hidden: torch.Tensor, batch: Batch, side: str) -> list[torch.Tensor]:
    """Per utterance of the batch: (n_b, D) states at its valid positions."""
    if side == "decoder":
        keep = batch["labels"] != IGNORE_INDEX  # the positions the CE/KL/geodesic losses score
        return [hidden[b][keep[b].to(hidden.device)] for b in range(hidden.shape[0])]
    seconds = batch["audio_seconds"].tolist()
    return [hidden[b, _frame_index(s, hidden.shape[1]).to(hidden.device)] for b, s in enumerate(seconds)]


@torch.no_grad()
def collect_states(
    model, batches: list[Batch], projectors: dict[str, nn.Module | None], device: torch.device
) -> dict[str, SideStates]:
    """Unit-norm states of ``model`` per side in ``projectors`` (None = no projection, just normalise)."""
    model = model.to(device).eval()
    rows: dict[str, list[np.ndarray]] = {side: [] for side in projectors}
    owners: dict[str, list[np.ndarray]] = {side: [] for side in projectors}
    first = 0
    for batch in batches:
        feats = batch["input_features"].to(device, next(model.parameters()).dtype)
        out = forward_states(model, batch["decoder_input_ids"].to(device), input_features=feats)
        for side, proj in projectors.items():
            hidden = out.decoder_hidden if side == "decoder" else out.encoder_hidden
            assert hidden is not None  # forward_states returns both sides
            if proj is not None:
                hidden = proj.to(device)(hidden.float())
            hidden = F.normalize(hidden.float(), dim=-1)
            for b, states in enumerate(_side_rows(hidden, batch, side)):
                rows[side].append(states.cpu().numpy())
                owners[side].append(np.full(len(states), first + b))
        first += len(batch["ids"])
    return {
        side: SideStates(np.concatenate(rows[side]).astype(np.float32), np.concatenate(owners[side]))
        for side in projectors
    }


def geodesic_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) great-circle distance acos(a_i . b_i) in radians between paired unit vectors a, b (N, D).

    Computed as 2 atan2(|a - b|, |a + b|) in float64, equal to acos(a . b) but accurate near 0, where
    acos of a float32 dot product reads ~3e-4 rad of rounding noise for identical states.
    """
    if a.shape != b.shape:
        raise GeodistillError(f"geodesic distances: paired states differ in shape {a.shape} vs {b.shape}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    a64 /= np.maximum(np.linalg.norm(a64, axis=-1, keepdims=True), 1e-300)
    b64 /= np.maximum(np.linalg.norm(b64, axis=-1, keepdims=True), 1e-300)
    return 2 * np.arctan2(np.linalg.norm(a64 - b64, axis=-1), np.linalg.norm(a64 + b64, axis=-1))


@dataclass(frozen=True)
class SidePlan:
    """How one side's student states reach the teacher's space, before and after training."""

    after: nn.Module | None  # the trained projector (None: widths match, states only normalised)
    before: nn.Module | None  # the projector as training started (identity / untrained / None)
    note: str  # one sentence for the caption


def plan_sides(
    cfg: Config, trained: nn.ModuleDict, d_student: int, d_teacher: int, sides: tuple[str, ...] = SIDES
) -> tuple[dict, list[str]]:
    """{side: SidePlan} for those of ``sides`` that can be compared, and notes on those that cannot."""
    initial = initial_projectors(trained, d_student, cfg.train.seed)
    plans, notes = {}, []
    for side in sides:
        if side in trained:
            start = "identity" if d_student == d_teacher else "a fresh random init (not the run's exact draw)"
            note = (
                f"{side}: student states pass through the run's trained projector (projector.safetensors, "
                f"Linear {d_student}->{d_teacher} + L2 norm) into the teacher's space; before training "
                f"the projector is {start}"
            )
            plans[side] = SidePlan(trained[side], initial[side], note)
        elif d_student == d_teacher:
            plans[side] = SidePlan(
                None,
                None,
                f"{side}: no {side} projector was trained (loss.hidden_on="
                f"{cfg.loss.hidden_on}): raw student states, L2-normalised",
            )
        else:
            notes.append(
                f"{side}: student width {d_student} differs from the teacher's {d_teacher} and no "
                f"{side} projector was trained, so its states cannot be compared"
            )
    return plans, notes


@dataclass(frozen=True)
class Compared:
    """One side's unit-norm states, rows paired: the teacher's, the student's before and after training."""

    note: str  # how the student's states reach the teacher's space (one sentence for the caption)
    teacher: SideStates
    before: SideStates
    after: SideStates
