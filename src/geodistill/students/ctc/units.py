"""The CTC student's output units (``student.ctc.vocab``): characters, or BPE subwords trained on its text.

    chars  : blank, space, apostrophe, a-z (``CHARS``); a word ends at a space
    bpe:N  : blank + N sentencepiece BPE pieces trained on data.train's transcripts (normalised as for the
             characters); a piece that starts with "▁" (``WORD``) starts a word

Id 0 is the CTC blank in both. Subword units carry spelling in the inventory: "front" can be one unit instead
of five letters the head must get right one by one. A clip still needs one output frame per unit (plus a
blank between equal neighbours: ``loss.frames_needed``); BPE units are fewer per second than characters, so
that check only gets easier.

A BPE model is trained once per run, single-threaded and so deterministic (a resumed run retrains the same
model from the same transcripts), and saved beside the weights as ``units.model`` (``UNITS_FILE``) with its
pieces in ctc_config.json's ``vocab``: decoding needs the pieces only, training new text needs the model.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from geodistill.config import ConfigError, ctc_vocab
from geodistill.errors import ModelLoadError
from geodistill.optional import require
from geodistill.students.ctc.loss import BLANK, CHAR_IDS, CHARS, normalise_for_ctc, text_to_labels

WORD = "\u2581"  # sentencepiece's word-start mark "▁"
UNITS_FILE = "units.model"  # a BPE student's sentencepiece model, beside its weights
BLANK_LABEL = CHARS[BLANK]


def units_text(ids: Iterable[int], vocab: Sequence[str]) -> str:
    """The text of unit ids (blanks and repeats already removed): pieces joined, "▁" read as a space, runs of
    spaces made one, edges stripped. Works for both unit kinds (characters hold no "▁")."""
    text = "".join(vocab[i] for i in ids if i != BLANK)
    return " ".join(text.replace(WORD, " ").split())


class CharUnits:
    """Characters: ``CHARS``, the student's units before BPE."""

    spec = "chars"
    vocab: tuple[str, ...] = CHARS

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        """(unit ids, characters dropped as outside the units) of ``text`` after ``normalise_for_ctc``."""
        return text_to_labels(text)

    def decode(self, ids: Iterable[int]) -> str:
        return units_text(ids, self.vocab)

    def save(self, folder: Path) -> None:
        """Nothing to write: the characters are fixed."""


class BPEUnits:
    """BPE pieces of a sentencepiece model (``proto``: its serialised bytes); unit id = piece id + 1."""

    def __init__(self, proto: bytes, spec: str, where: str = "student.ctc.vocab"):
        spm = require("sentencepiece", "ctc", "BPE units for a CTC student (student.ctc.vocab: bpe:N)")
        self.proto, self.spec = proto, spec
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=proto)
        except (RuntimeError, OSError) as exc:
            raise ModelLoadError(f"{where}: not a sentencepiece model ({_reason(exc)})") from exc
        pieces = [self.sp.id_to_piece(i) for i in range(self.sp.get_piece_size())]
        self.vocab: tuple[str, ...] = (BLANK_LABEL, *pieces)
        # what the pieces can spell: a character outside it is dropped (and reported), never <unk>
        spelling = (p for i, p in enumerate(pieces) if not (self.sp.is_unknown(i) or self.sp.is_control(i)))
        self.alphabet = {c for p in spelling for c in p} & set(CHAR_IDS)

    def encode(self, text: str) -> tuple[list[int], list[str]]:
        """(unit ids, characters dropped) of ``text`` after ``normalise_for_ctc``; characters outside the
        pieces' alphabet are dropped first, so no target is <unk>."""
        norm = normalise_for_ctc(text)
        dropped = [c for c in norm if c not in self.alphabet and c != " "]
        kept = " ".join("".join(c for c in norm if c in self.alphabet or c == " ").split())
        return [i + 1 for i in self.sp.encode(kept)] if kept else [], dropped

    def decode(self, ids: Iterable[int]) -> str:
        return units_text(ids, self.vocab)

    def save(self, folder: Path) -> None:
        """``units.model`` into ``folder``: what ``load_units`` reads back."""
        (folder / UNITS_FILE).write_bytes(self.proto)


Units = CharUnits | BPEUnits


def _reason(exc: BaseException) -> str:
    """sentencepiece's message without its source location ("INTERNAL: src/x.cc(638) [...] ")."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return re.sub(r"^.*?\] ", "", text)


def train_bpe(texts: Iterable[str], size: int, spec: str | None = None) -> BPEUnits:
    """BPE units (``size`` pieces, <unk> included) trained on ``texts`` normalised as CTC targets.

    One thread, so the same texts give the same model byte for byte. Raises a one-line ConfigError naming
    ``student.ctc.vocab`` when the text cannot support ``size`` pieces (too many, or fewer than its
    characters).
    """
    spm = require("sentencepiece", "ctc", "BPE units for a CTC student (student.ctc.vocab: bpe:N)")
    spec = spec or f"bpe:{size}"
    lines = [t for t in (" ".join(text_to_chars(x)) for x in texts) if t]
    if not lines:
        raise ConfigError(
            f"student.ctc.vocab: {spec}: no data.train transcript to train BPE on (a streamed spec lists "
            "none up front; use chars)"
        )
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=model,
            vocab_size=size,
            model_type="bpe",
            character_coverage=1.0,
            normalization_rule_name="identity",  # normalise_for_ctc did it
            bos_id=-1,
            eos_id=-1,
            unk_id=0,
            num_threads=1,
            minloglevel=2,
        )
    except RuntimeError as exc:
        raise ConfigError(f"student.ctc.vocab: {spec}: {_size_reason(str(exc), len(lines))}") from exc
    return BPEUnits(model.getvalue(), spec)


def text_to_chars(text: str) -> list[str]:
    """The words of ``text`` as CTC targets spell them (``normalise_for_ctc``, characters outside ``CHARS``
    dropped)."""
    return "".join(c for c in normalise_for_ctc(text) if c in CHAR_IDS).split()


def _size_reason(message: str, n_lines: int) -> str:
    if m := re.search(r"value <= (\d+)", message):
        return f"more units than the {n_lines} training transcripts support (at most {m[1]} here)"
    if m := re.search(r"vs (\d+)", message):
        return f"fewer units than the training transcripts' characters need (at least {m[1]})"
    return f"sentencepiece could not train it ({_reason(RuntimeError(message))})"


def make_units(spec: str, texts: Iterable[str]) -> Units:
    """The units ``student.ctc.vocab`` names; BPE is trained on ``texts`` (the training transcripts)."""
    kind, size = ctc_vocab(spec)
    if kind == "chars":
        return CharUnits()
    assert size is not None
    return train_bpe(texts, size, spec)


def load_units(spec: str, vocab: Sequence[str], folder: Path) -> Units:
    """The units a saved student was trained with: its ``spec`` and ``vocab`` (ctc_config.json) and, for
    BPE, ``folder``/units.model. One-line ModelLoadError when the file is missing or disagrees with vocab."""
    kind, _ = ctc_vocab(spec)
    if kind == "chars":
        return CharUnits()
    path = folder / UNITS_FILE
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing; a {spec} CTC student needs its BPE model beside the weights")
    units = BPEUnits(path.read_bytes(), spec, where=str(path))
    if units.vocab != tuple(vocab):
        raise ModelLoadError(
            f"{path}: its {len(units.vocab) - 1} pieces are not the {len(vocab) - 1} of "
            "ctc_config.json's vocab"
        )
    return units
