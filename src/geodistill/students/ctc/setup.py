"""A run with a CTC student: the online (or cached) teacher gives encoder states only to compare."""

from __future__ import annotations

from geodistill.config import Config
from geodistill.data import BadSamples, WhisperCollator
from geodistill.data.sets import build_data
from geodistill.students.ctc.model import CTCCollator, build_ctc_student
from geodistill.students.ctc.units import make_units
from geodistill.students.family import RunParts, TeacherSide
from geodistill.teacher.factory import make_teacher
from geodistill.teacher.outputs import NoTeacherSignal, OnlineTeacherEncoder


def build(cfg: Config, side: TeacherSide, bad: BadSamples, device) -> RunParts:
    """The CTC student, the teacher signal its hidden loss reads (none without one), and its data. BPE
    units (``student.ctc.vocab: bpe:N``) are trained here on the training transcripts."""
    teacher, t_proc, provider = side.model, side.processor, side.provider
    train_set, val, prompt = build_data(cfg, t_proc, teacher, bad)
    units = make_units(cfg.student.ctc.vocab, (u.text for u in train_set.utts))
    student = build_ctc_student(cfg, teacher, t_proc, side.config, device, units)
    if provider is None and not cfg.loss.hidden_active:
        provider = NoTeacherSignal()  # CTC on the transcripts only: nothing to take from the teacher per step
    elif provider is None and not cfg.teacher_cache:  # no token losses: the teacher's decoder is not run
        assert teacher is not None  # train.setup loads it for every student but a pretrained one
        provider = OnlineTeacherEncoder(teacher)
    elif provider is None:
        assert teacher is not None
        provider = make_teacher(cfg, (teacher, t_proc))
    base = WhisperCollator(prompt or None, t_proc.tokenizer.pad_token_id)
    collate = CTCCollator(base, t_proc.tokenizer, cfg.student.ctc.downsample, bad, units)
    return RunParts(student, provider, train_set, val, collate, prompt)
