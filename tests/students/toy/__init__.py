"""A toy student family, to prove that a family is one folder plus one line in ``FAMILIES``.

``student.init: toy`` builds a Whisper layer copy (the seq2seq family's parts) whose saved folder carries
its own marker, ``toy.json``; it decodes greedily with Whisper and counts what it is asked to do, so a
test can see every consumer (training, validation, evaluate, transcribe, export, report, tune, ablate)
reach it through the registry and nothing else.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

from geodistill.students.family import Card
from geodistill.students.seq2seq import FAMILY as SEQ2SEQ

MARKER = "toy.json"
CALLS: Counter = Counter()  # hook name -> times called


class ToyFamily:
    name = "toy"
    label = "toy student"
    inits = ("toy",)
    marker = MARKER
    formats = ("toy",)  # its own format: the Whisper folder plus the marker
    token_cap = True
    window = SEQ2SEQ.window
    ablation_variants = ("ce", "ce+kl")
    untuned = ("loss.temperature",)

    def build(self, cfg, side, bad, device):
        CALLS["build"] += 1
        parts = SEQ2SEQ.build(replace(cfg, student=replace(cfg.student, init="copy")), side, bad, device)
        student, save = parts.student, parts.student.save

        def save_with_marker(out: Path, extra: dict | None = None) -> None:
            save(out, extra)
            (out / MARKER).write_text(json.dumps({"family": "toy"}))

        student.family = "toy"  # the instance's family: FAMILIES["toy"]
        student.save = save_with_marker
        return parts

    def objective(self, cfg, offer):
        CALLS["objective"] += 1
        return SEQ2SEQ.objective(cfg, offer)

    def owns(self, model) -> bool:
        return getattr(model, "toy", False)

    def check(self, options):
        CALLS["check"] += 1
        return replace(options, beam_size=1)  # a toy decodes greedily whatever it is asked

    def load(self, spec, device, options):
        CALLS["load"] += 1
        return SEQ2SEQ.load(spec, device, options)

    def texts(self, model, processor, options):
        CALLS["texts"] += 1
        return SEQ2SEQ.texts(model, processor, options)

    def decode(self, model, processor, utts, bad, options):
        CALLS["decode"] += 1
        return SEQ2SEQ.decode(model, processor, utts, bad, options)

    def describe(self, result: dict) -> dict[str, str]:
        return {**SEQ2SEQ.describe(result), "decoding": "toy greedy"}

    def export(self, folder: Path, out: Path, fmt: str, quantization: str | None, card: Card) -> None:
        CALLS["export"] += 1
        SEQ2SEQ.export(folder, out, "hf", None, card)
        (out / MARKER).write_text(json.dumps({"family": "toy"}))

    def report_sides(self, cfg, student_dir, teacher, processor, batches, device):
        CALLS["report_sides"] += 1
        return {}, ["toy: no hidden-state sides"]

    def initial_student(self, config: dict) -> str:
        return "the toy student before training"


FAMILY = ToyFamily()
