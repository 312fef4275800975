"""What a student family is: the one object every consumer (training, validation, evaluate, transcribe,
export, report, tune, ablate) asks, so that none of them branches on a family.

A family lives in one folder (``students/<name>/``) and is one line in ``geodistill.students.FAMILIES``.
Its ``__init__.py`` defines ``FAMILY``, an object meeting ``Family`` below; its modules hold the model
(``model.py``), the objective, decoding, saving/export and the report's hidden-state sides.
``docs/adding-a-student.md`` walks through adding one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration

from geodistill.config import Config
from geodistill.contracts import Batch, Objective, Student, TeacherOffer, TeacherProvider
from geodistill.data import BadSamples, SpeechDataset, Utterance
from geodistill.decoding.batches import Decoded
from geodistill.decoding.options import DecodeOptions
from geodistill.decoding.segments import Transcript
from geodistill.students.states import Compared

Texts = Callable[[list[np.ndarray], Sequence], list[str]]  # (16-kHz clips, their names) -> transcripts
Timed = Callable[[list[np.ndarray], Sequence], list[Transcript]]  # the same, with segment (and word) times


@dataclass(frozen=True)
class TeacherSide:
    """The teacher as set-up found it, before the student exists."""

    model: WhisperForConditionalGeneration | None  # the frozen teacher (None: a complete cache stands in)
    processor: Any  # its WhisperProcessor
    config: dict  # its config as a dict
    provider: TeacherProvider | None  # a provider given by the caller (a cache reader), else None


@dataclass
class RunParts:
    """What a family builds for a run: the student, its teacher signal and its data."""

    student: Student
    teacher: TeacherProvider
    train_set: SpeechDataset
    val_utts: list[Utterance]
    collate: Callable[[list], Batch]
    prompt: list[int]


@dataclass(frozen=True)
class Card:
    """What a model card says besides the weights: provenance and measured numbers."""

    evaluation: dict | None  # eval.json of the source run (or --eval-json), if any
    cfg: dict  # the run's resolved config ({} for a plain model)
    license: str
    name: str  # the card's title: the source's folder name
    source: str  # the model spec or folder exported


class Family(Protocol):
    name: str  # "seq2seq" | "ctc": eval.json's "family", the registry key
    label: str  # what to call one in a message: "Whisper model", "CTC student"
    inits: tuple[str, ...]  # the student.init values that build it
    marker: str  # the file a saved folder of this family holds (config.json, ctc_config.json)
    formats: tuple[str, ...]  # ``geodistill export --format`` values it can be written as
    token_cap: bool  # it emits decoder tokens, so a new-token cap applies to its decoding
    window: str  # what a clip over its input window is "longer than" (transcribe's message)
    ablation_variants: tuple[str, ...]  # ``ablate``'s default variants for it
    untuned: tuple[str, ...]  # keys of tune's default search space it has no use for

    # training
    def build(self, cfg: Config, side: TeacherSide, bad: BadSamples, device: Any) -> RunParts: ...
    def objective(self, cfg: Config, offer: TeacherOffer) -> Objective: ...

    # decoding: evaluate, transcribe, validation
    def owns(self, model: Any) -> bool: ...  # a loaded model of this family
    def check(self, options: DecodeOptions) -> DecodeOptions: ...  # refuses what it cannot honour
    def load(self, spec: Any, device: str, options: DecodeOptions) -> tuple[Any, Any, Any]: ...
    def texts(self, model: Any, processor: Any, options: DecodeOptions) -> Texts: ...
    def transcripts(
        self, model: Any, processor: Any, options: DecodeOptions, name: str = ...
    ) -> Timed: ...  # timed transcripts (transcribe's json/srt/vtt/tsv), refusing word times it cannot give
    def decode(
        self, model: Any, processor: Any, utts: Sequence[Utterance], bad: BadSamples, options: DecodeOptions
    ) -> tuple[Decoded, dict, str]: ...  # (decoded, eval.json decoding fields, what compute time covers)

    # export, report
    def export(self, folder: Path, out: Path, fmt: str, quantization: str | None, card: Card) -> None: ...
    def describe(self, result: dict) -> dict[str, str]: ...  # eval.md's rows of an eval.json dict
    def report_sides(
        self,
        cfg: Config,
        student_dir: Path,
        teacher: Any,
        processor: Any,
        batches: list[Batch],
        device: torch.device,
    ) -> tuple[dict[str, Compared], list[str]]: ...
    def initial_student(self, config: dict) -> str: ...  # how the report's "before training" one was made
