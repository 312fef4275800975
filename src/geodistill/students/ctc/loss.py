"""CTC objective of the decoder-less student: ce_weight * CTC + geo_weight * hidden (encoder states).

The CTC student has no decoder, so the token losses of ``DistillationLoss`` (CE on Whisper tokens, KL /
TAID against the teacher's next-token distribution) have nothing to compare: KL does not apply. What
remains is CTC on the transcript's characters (weighted by ``loss.ce_weight``: the hard-label weight of
every family) and the hidden loss between the student's frames and the teacher's encoder states, aligned
in time (average-pool teacher frames to the student's rate, or interpolate; ``loss.encoder_align``).

Transcripts become character ids with ``text_to_labels``: lower-case, digits spelled out (with the
optional ``num2words``), accents stripped, punctuation removed; any other character is dropped and
returned so the caller can report it.
"""

from __future__ import annotations

import math
import re
import unicodedata

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geodistill.config import LossConfig
from geodistill.contracts import ModelStates, TeacherOutputs
from geodistill.errors import GeodistillError
from geodistill.losses.hidden import GeodesicLoss, MSEHiddenLoss
from geodistill.models.frames import align_frames

BLANK = 0
CHARS = ("<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz")  # id -> character; id 0 is the CTC blank
CHAR_IDS = {c: i for i, c in enumerate(CHARS) if i != BLANK}
_SPACE_LIKE = re.compile(r"[\s\-\u2010-\u2015_/]+")  # hyphens, dashes, slashes separate words
_PUNCT = set('.,!?;:"()[]{}<>«»“”„…*~`')  # removed without a report: punctuation carries no sound
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})


def _spell_digits(text: str) -> str:
    """Digit runs -> English words when num2words is installed, else unchanged (then reported)."""
    try:
        from num2words import num2words  # noqa: PLC0415 (optional extra [demo])
    except ImportError:
        return text
    return re.sub(r"\d+", lambda m: f" {num2words(int(m.group()))} ", text)


def normalise_for_ctc(text: str) -> str:
    """Lower-case, digits spelled out, accents stripped, dashes -> spaces, punctuation removed."""
    text = _spell_digits(text.lower().translate(_APOSTROPHES))
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = "".join(c for c in text if c not in _PUNCT)
    return _SPACE_LIKE.sub(" ", text).strip()


def text_to_labels(text: str) -> tuple[list[int], list[str]]:
    """(character ids, characters dropped as outside the vocabulary) of ``text`` after normalisation."""
    ids, dropped = [], []
    for c in normalise_for_ctc(text):
        if c in CHAR_IDS:
            ids.append(CHAR_IDS[c])
        else:
            dropped.append(c)
    # dropping a character may leave doubled or edge spaces
    out: list[int] = []
    for i in ids:
        if i == CHAR_IDS[" "] and (not out or out[-1] == i):
            continue
        out.append(i)
    while out and out[-1] == CHAR_IDS[" "]:
        out.pop()
    return out, dropped


def frames_needed(labels: list[int]) -> int:
    """Fewest CTC input frames that can emit ``labels``: one per label + a blank between equal neighbours."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:], strict=False))


class CTCLoss(nn.Module):
    """torch's CTC (blank 0, zero_infinity) -> the mean over utterances of each one's negative log-likelihood.

    zero_infinity turns an impossible alignment (input shorter than its labels) into 0 with no gradient;
    the collator already drops such clips (``bad_samples.jsonl``), so this only guards against NaN.
    """

    def forward(
        self, log_probs: Tensor, targets: Tensor, input_lengths: Tensor, target_lengths: Tensor
    ) -> Tensor:
        """log_probs (B, T, V) log-softmax; targets (B, U) padded; input_lengths / target_lengths (B,)."""
        per_utt = F.ctc_loss(
            log_probs.float().transpose(0, 1),
            targets.long(),
            input_lengths.long().cpu(),
            target_lengths.long().cpu(),
            blank=BLANK,
            reduction="none",
            zero_infinity=True,
        )
        return per_utt.mean()


def teacher_frames_for(
    states: Tensor, n_frames: int, downsample: int, pool: int | None, method: str
) -> Tensor:
    """Teacher encoder states (B, T_t, D) -> (B, n_frames, D) over the span the student's frames cover.

    A student frame covers ``downsample`` encoder positions (20 ms each), a teacher frame ``pool`` (1 when
    not pooled): the first ceil(n_frames * downsample / pool) teacher frames are cut out (the rest is the
    30-s window's padding) and resampled with ``align_frames`` (3:1 average pooling at downsample 3).
    """
    span = min(math.ceil(n_frames * downsample / (pool or 1)), states.shape[1])
    return align_frames(states[:, :span], n_frames, method)


class CTCDistillationLoss(nn.Module):
    """total = ce_weight * CTC + geo_weight * hidden(student frames, aligned teacher encoder states).

    No KL term: the student has no decoder distribution to compare with the teacher's. Stateless
    (``state_dict`` is empty; ``update`` is a no-op), so a resumed run needs nothing from it.
    """

    def __init__(self, cfg: LossConfig, downsample: int = 1, teacher_pool: int | None = None):
        super().__init__()
        if cfg.taid != "off":
            raise GeodistillError("loss.taid: a ctc student has no decoder to interpolate; use taid: off")
        self.cfg, self.downsample, self.teacher_pool = cfg, downsample, teacher_pool
        self.ctc = CTCLoss()
        self.hidden: GeodesicLoss | MSEHiddenLoss | None = None
        if cfg.hidden_active:
            self.hidden = GeodesicLoss() if cfg.hidden_loss == "geodesic" else MSEHiddenLoss(normalize=True)

    def forward(
        self,
        student: ModelStates,
        teacher: TeacherOutputs,
        targets: Tensor,
        target_lengths: Tensor,
        step: int = 0,
        total_steps: int = 1,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """student.logits (B, T, V) log-probs, student.encoder_mask (B, T) real frames, student.encoder_hidden
        (B, T, D_t) projected; targets (B, U) character ids; target_lengths (B,).
        Returns (total, parts): detached "ctc", "hidden_enc" + "hidden" (when on), "total"."""
        mask = student.encoder_mask
        if mask is None:
            mask = torch.ones(student.logits.shape[:2], dtype=torch.bool, device=student.logits.device)
        parts = {"ctc": self.ctc(student.logits, targets, mask.sum(1), target_lengths)}
        total = self.cfg.ce_weight * parts["ctc"]
        if self.hidden is not None:
            s, t = student.encoder_hidden, teacher.encoder_hidden
            if s is None or t is None:
                side = "student" if s is None else "teacher"
                raise GeodistillError(
                    f"hidden loss on encoder_hidden: the {side} outputs lack it "
                    "(or set loss.hidden_loss=none)"
                )
            t = teacher_frames_for(
                t.to(s.device), s.shape[1], self.downsample, self.teacher_pool, self.cfg.encoder_align
            )
            parts["hidden_enc"] = parts["hidden"] = self.hidden(s, t, mask)
            total = total + self.cfg.geo_weight * parts["hidden"]
        parts["total"] = total
        return total, {name: value.detach().float() for name, value in parts.items()}

    def update(self, step: int, total_steps: int) -> None:
        """Nothing adapts over training (the loop calls this after every step for every loss)."""
