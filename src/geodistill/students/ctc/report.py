"""The report's hidden-state views for a CTC student: its frames vs the teacher's encoder states.

What the hidden loss compares (``geodistill.students.ctc.loss``), the report compares: the student's
states before its character head, through the run's trained encoder projector onto the teacher's sphere,
against the
teacher's encoder states over the same span, aligned to the student's frame rate (``loss.encoder_align``:
3:1 average pooling at downsample 3, equal frames at 1). Rows pair the same utterance and student frame,
evenly subsampled over each clip's own frames. A CTC student has no decoder, so there is no decoder side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geodistill.config import Config
from geodistill.contracts import Batch
from geodistill.students.ctc.loss import teacher_frames_for
from geodistill.students.ctc.model import CTCModel, ctc_model, encode_clips, load_ctc
from geodistill.students.states import Compared, SideStates, load_projectors, plan_sides, spaced_frames

ALIGNMENT_NOTE = (
    "the CTC student's frames are its states before the character head; the teacher's encoder states are "
    "aligned to its frame rate as the hidden loss aligns them (loss.encoder_align={align}, downsample "
    "{downsample})"
)


def _unit(states: torch.Tensor, projector: nn.Module | None) -> torch.Tensor:
    if projector is not None:
        states = projector.to(states.device)(states.float())
    return F.normalize(states.float(), dim=-1)


@torch.no_grad()
def collect_ctc_states(
    teacher,
    students: dict[str, tuple[CTCModel, nn.Module | None]],
    batches: list[Batch],
    device: torch.device,
    align: str,
) -> dict[str, SideStates]:
    """Unit-norm rows of "teacher" and of each named student (through its projector, None: none), paired.

    The students must share a shape (the trained model and the one training started from): their frames,
    and each clip's frame count, are the same.
    """
    downsample = next(iter(students.values()))[0].shape.downsample
    rows: dict[str, list[np.ndarray]] = {name: [] for name in ("teacher", *students)}
    owners: list[np.ndarray] = []
    first = 0
    for batch in batches:
        feats, seconds = batch["input_features"].to(device), batch["audio_seconds"]
        out, lengths = {}, torch.zeros(0)
        for name, (model, projector) in students.items():
            _, states, lengths = encode_clips(model.to(device).eval(), feats, seconds)
            out[name] = _unit(states, projector)
        encoder = teacher.model.encoder(feats.to(teacher.dtype)).last_hidden_state
        aligned = teacher_frames_for(encoder, states.shape[1], downsample, None, align)
        out["teacher"] = _unit(aligned, None)
        for b, valid in enumerate(lengths.tolist()):
            idx = spaced_frames(max(int(valid), 1)).to(device)
            for name in rows:
                rows[name].append(out[name][b, idx].cpu().numpy())
            owners.append(np.full(len(idx), first + b))
        first += len(batch["ids"])
    owner = np.concatenate(owners)
    return {name: SideStates(np.concatenate(r).astype(np.float32), owner) for name, r in rows.items()}


def report_sides(
    cfg: Config, student_dir: Path, teacher, processor, batches: list[Batch], device: torch.device
) -> tuple[dict[str, Compared], list[str]]:
    """The encoder side of a CTC student, trained and as the config builds it, against the teacher."""
    model, _ = load_ctc(student_dir, device=str(device))
    trained = load_projectors(student_dir)
    d_teacher = teacher.config.d_model
    plans, notes = plan_sides(cfg, trained, model.shape.d_model, d_teacher, sides=("encoder",))
    notes.append("decoder: a CTC student has no decoder, so only encoder states are compared")
    if not plans:
        return {}, notes
    plan = plans["encoder"]
    torch.manual_seed(cfg.train.seed)  # as the run seeded it; the teacher's loading may have drawn first
    initial = ctc_model(cfg, teacher, model.shape.n_mels)
    pairs = {"after": (model, plan.after), "before": (initial, plan.before)}
    states = collect_ctc_states(teacher, pairs, batches, device, cfg.loss.encoder_align)
    align = ALIGNMENT_NOTE.format(align=cfg.loss.encoder_align, downsample=model.shape.downsample)
    note = f"{plan.note}; {align}"
    return {"encoder": Compared(note, states["teacher"], states["before"], states["after"])}, notes


def initial_student(config: dict) -> str:
    """How the report's "before training" CTC student was made (``config``: the run's config dict)."""
    copy = config.get("student", {}).get("ctc", {}).get("init_from_teacher")
    start = "the teacher's convs and first blocks copied" if copy else "random"
    return f"the CTC student as its config builds it ({start}; seed train.seed, maybe not the run's draw)"
