"""The CTC family (``student.init: ctc``): convs + Transformer blocks + a head over characters or BPE
pieces, no decoder, decoded greedily (best path) or by a prefix beam search with a word LM, each clip at its
own length.

``model.py`` the student, its collator, saving and ``load_ctc``; ``loss.py`` its objective (CTC + an
aligned encoder hidden loss); ``units.py`` its output units (characters, BPE); ``setup.py`` its run;
``decode.py`` its decoding; ``beam.py`` the beam search; ``lm.py`` its word LMs (``geodistill lm build``,
loading one); ``export.py`` its folder and model card; ``report.py`` its hidden-state side.
"""

from __future__ import annotations

from geodistill.config import Config
from geodistill.contracts import TeacherOffer
from geodistill.students.ctc import decode as decoding
from geodistill.students.ctc import export as exporting
from geodistill.students.ctc import report as reporting
from geodistill.students.ctc import setup as building
from geodistill.students.ctc.loss import CTCDistillationLoss
from geodistill.students.ctc.model import CTC_CONFIG, CTCModel, CTCStudent, load_ctc


class CTCFamily:
    name = "ctc"
    label = "CTC student"
    inits: tuple[str, ...] = ("ctc",)
    marker = CTC_CONFIG
    formats = exporting.FORMATS
    token_cap = False  # one label per frame
    window = decoding.WINDOW
    # "ce": its CTC loss; no KL or TAID without a decoder
    ablation_variants: tuple[str, ...] = ("ce", "ce+mse", "ce+geo")
    # no decoder, no LoRA
    untuned: tuple[str, ...] = ("loss.kl_weight", "loss.temperature", "student.lora.dropout")

    build = staticmethod(building.build)
    check = staticmethod(decoding.check)
    load = staticmethod(decoding.load)
    texts = staticmethod(decoding.texts)
    transcripts = staticmethod(decoding.transcripts)
    decode = staticmethod(decoding.decode)
    describe = staticmethod(decoding.describe)
    export = staticmethod(exporting.export)
    report_sides = staticmethod(reporting.report_sides)
    initial_student = staticmethod(reporting.initial_student)

    @staticmethod
    def objective(cfg: Config, offer: TeacherOffer) -> CTCDistillationLoss:
        """CTC on the characters + the hidden loss against the teacher's (maybe pooled) encoder states."""
        return CTCDistillationLoss(cfg.loss, cfg.student.ctc.downsample, offer.encoder_pool)

    @staticmethod
    def owns(model) -> bool:
        return isinstance(model, CTCModel)


FAMILY = CTCFamily()

__all__ = ["FAMILY", "CTCStudent", "load_ctc"]
