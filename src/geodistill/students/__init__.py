"""Student families behind one registry: ``FAMILIES``, keyed by name, found by ``student.init`` or by the
marker file of a saved folder.

- ``seq2seq`` (``students/seq2seq/``): a Whisper student, a layer copy of the teacher or another pretrained
  Whisper, with LoRA and Riemannian projectors; dynamic audio context is its option. It also decodes any
  plain Whisper model (a teacher, a hub id, an embedded name).
- ``ctc`` (``students/ctc/``): the decoder-less CNN + Transformer CTC student (``student.init: ctc``).

Every consumer asks the family (``geodistill.students.family.Family``) and never branches on one; adding a
family is one folder plus one line below (``docs/adding-a-student.md``).
"""

from __future__ import annotations

from pathlib import Path

from geodistill.errors import GeodistillError
from geodistill.models.loading import EMBEDDED
from geodistill.runfolder import RunFolder
from geodistill.students.ctc import FAMILY as CTC
from geodistill.students.family import Family
from geodistill.students.seq2seq import FAMILY as SEQ2SEQ

FAMILIES: dict[str, Family] = {f.name: f for f in (SEQ2SEQ, CTC)}
DEFAULT = SEQ2SEQ  # what a plain Whisper model (no marker of another family) is


def family_for_init(init: str) -> Family:
    """The family that ``student.init`` builds."""
    for family in FAMILIES.values():
        if init in family.inits:
            return family
    known = sorted(i for f in FAMILIES.values() for i in f.inits)
    raise GeodistillError(f"student.init: no student family builds {init!r} (known: {', '.join(known)})")


def family_of_folder(folder: Path) -> Family:
    """The family of a saved folder, by its marker file (a folder with none is a plain Whisper model)."""
    for family in FAMILIES.values():
        if family is not DEFAULT and (folder / family.marker).is_file():
            return family
    return DEFAULT


def student_folder(path: Path) -> Path | None:
    """The folder holding a model behind a local path: itself, or a run folder's best/ or adapter_final/."""
    markers = {f.marker for f in FAMILIES.values()}

    def holds(folder: Path) -> bool:
        return any((folder / m).is_file() for m in markers)

    return path if holds(path) else RunFolder(path).student(holds)


def family_of(model: object) -> Family:
    """The family of a model spec (embedded name, hub id, folder, run folder) or a loaded pair."""
    if isinstance(model, tuple | list):
        return next((f for f in FAMILIES.values() if f.owns(model[0])), DEFAULT)
    if not isinstance(model, str | Path) or str(model) in EMBEDDED:
        return DEFAULT
    path = Path(model).expanduser()
    found = student_folder(path) if path.is_dir() else None
    return family_of_folder(found) if found is not None else DEFAULT


__all__ = [
    "DEFAULT",
    "FAMILIES",
    "Family",
    "family_for_init",
    "family_of",
    "family_of_folder",
    "student_folder",
]
