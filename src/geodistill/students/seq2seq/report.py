"""The report's hidden-state sides of a Whisper student: its encoder and decoder states (through the run's
projectors) against the teacher's, trained and as training started."""

from __future__ import annotations

from pathlib import Path

import torch

from geodistill.config import Config
from geodistill.contracts import Batch
from geodistill.models import load_whisper
from geodistill.students.seq2seq.model import base_student
from geodistill.students.states import Compared, collect_states, load_projectors, plan_sides


def report_sides(
    cfg: Config, student_dir: Path, teacher, processor, batches: list[Batch], device: torch.device
) -> tuple[dict[str, Compared], list[str]]:
    """The comparable sides of a Whisper student (trained, and as training started) with the teacher."""
    student, _ = load_whisper(str(student_dir), device=str(device))
    trained = load_projectors(student_dir)
    plans, notes = plan_sides(cfg, trained, student.config.d_model, teacher.config.d_model)
    t_states = collect_states(teacher, batches, dict.fromkeys(plans), device)
    after = collect_states(student, batches, {s: p.after for s, p in plans.items()}, device)
    del student
    initial, _, _ = base_student(cfg, teacher, processor, device)
    before = collect_states(initial, batches, {s: p.before for s, p in plans.items()}, device)
    del initial
    return {s: Compared(p.note, t_states[s], before[s], after[s]) for s, p in plans.items()}, notes


def initial_student(config: dict) -> str:
    """How the report's "before training" Whisper student was made (``config``: the run's config dict)."""
    s = config.get("student", {})
    if s.get("init") == "pretrained":
        return f"the pretrained student {s.get('from')} as loaded, before training"
    return (
        f"the layer copy of the teacher before training (encoder_layers={s.get('encoder_layers')}, "
        f"decoder_layers={s.get('decoder_layers')}; LoRA adapters start at zero)"
    )
