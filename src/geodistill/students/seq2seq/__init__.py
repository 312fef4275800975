"""The seq2seq family: a Whisper student (``student.init: copy | pretrained``) — a layer copy of the teacher
or another pretrained Whisper, with LoRA and Riemannian projectors; dynamic audio context is its option.
It also decodes and exports any plain Whisper model (a teacher, a hub id, an embedded name).

``model.py`` the student, ``sharing.py`` what a copy takes from its teacher, ``setup.py`` its run,
``decode.py`` its decoding, ``export.py`` its formats, ``report.py`` its hidden-state sides.
"""

from __future__ import annotations

from geodistill.config import Config
from geodistill.contracts import TeacherOffer
from geodistill.decoding.engines import check_engine
from geodistill.losses import DistillationLoss
from geodistill.students.seq2seq import decode as decoding
from geodistill.students.seq2seq import export as exporting
from geodistill.students.seq2seq import report as reporting
from geodistill.students.seq2seq import setup as building
from geodistill.students.seq2seq.model import WhisperStudent, build_whisper_student


class Seq2SeqFamily:
    name = "seq2seq"
    label = "Whisper model"
    inits: tuple[str, ...] = ("copy", "pretrained")
    marker = "config.json"
    formats = exporting.FORMATS
    token_cap = True
    window = decoding.WINDOW
    ablation_variants: tuple[str, ...] = ("ce", "ce+kl", "ce+kl+mse", "ce+kl+geo", "ce+kl+geo+taid", "kl+geo")
    untuned: tuple[str, ...] = ()

    build = staticmethod(building.build)
    load = staticmethod(decoding.load)
    texts = staticmethod(decoding.texts)
    transcripts = staticmethod(decoding.transcripts)
    decode = staticmethod(decoding.decode)
    describe = staticmethod(decoding.describe)
    export = staticmethod(exporting.export)
    report_sides = staticmethod(reporting.report_sides)
    initial_student = staticmethod(reporting.initial_student)

    @staticmethod
    def objective(cfg: Config, offer: TeacherOffer) -> DistillationLoss:
        """CE + KL * T^2 + hidden loss (+ TAID) on the label positions."""
        return DistillationLoss(cfg.loss)

    @staticmethod
    def owns(model) -> bool:
        """A loaded Whisper model (anything with Whisper's generate: HF, CTranslate2, assisted)."""
        return hasattr(model, "generate")

    @staticmethod
    def check(options):
        """Every decoding option applies to Whisper, as far as the engine can honour it (``--engine onnx``:
        greedy, clips of up to 30 s, no temperature fallback)."""
        return check_engine(options)


FAMILY = Seq2SeqFamily()

__all__ = ["FAMILY", "WhisperStudent", "build_whisper_student"]
