"""``geodistill export``: ship a model in a format its users load, with a model card.

The source is a run folder (``best/`` if present, else ``adapter_final/``), a saved student, or any model
spec ``geodistill.models.load_whisper`` accepts. Its student family (``geodistill.students``) writes it:
a Whisper model as ``hf`` (a plain transformers folder), ``ct2`` (CTranslate2 / faster-whisper) or ``onnx``
(ONNX Runtime graphs); a CTC student as its own safetensors folder (``hf``). A format the family cannot hold
is refused in one line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from geodistill.errors import GeodistillError
from geodistill.modelcard import find_eval, training_record
from geodistill.models import load_whisper
from geodistill.models.loading import EMBEDDED, RUN_SUBDIRS
from geodistill.runfolder import RunFolder
from geodistill.students import FAMILIES, family_of_folder, student_folder
from geodistill.students.family import Card

RUNTIMES = {"hf": "transformers", "ct2": "CTranslate2", "ggml": "whisper.cpp", "onnx": "ONNX Runtime"}
QUANTIZATIONS: tuple[str, ...] = ("int8", "int8_float32", "float16", "float32")


def run_student_dir(run_dir: Path) -> Path:
    """The finished student of a run folder: ``best/`` if it holds a model, else ``adapter_final/``.

    Raises GeodistillError (one line) when neither holds a model (any family's marker file).
    """
    found = student_folder(run_dir)
    if found is None or found == run_dir:
        raise GeodistillError(
            f"{run_dir}: no finished student (neither {' nor '.join(f'{s}/' for s in RUN_SUBDIRS)} holds a "
            "model); let the run finish or point at a checkpointed student folder"
        )
    return found


def formats() -> tuple[str, ...]:
    """Every format some registered student family can be written as."""
    return tuple(dict.fromkeys(f for family in FAMILIES.values() for f in family.formats))


def _check_choices(fmt: str, quantization: str | None) -> None:
    if fmt not in formats():
        raise GeodistillError(f"--format: unknown format '{fmt}' (choose {' or '.join(formats())})")
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise GeodistillError(
            f"--quantization: unknown quantisation '{quantization}' (choose {', '.join(QUANTIZATIONS)})"
        )
    if quantization is not None and fmt != "ct2":
        raise GeodistillError("--quantization applies to --format ct2 only (hf exports keep float32)")


def resolve_source(source: str, work: Path) -> tuple[Path, Path | None]:
    """(folder holding the model, run folder or None) behind ``source``; hub/embedded models are saved to
    ``work`` as an HF folder."""
    path = Path(source).expanduser()
    if source not in EMBEDDED and RunFolder(path).is_run():
        return run_student_dir(path), path
    if source not in EMBEDDED and path.is_dir():
        return student_folder(path) or path, None
    model, processor = load_whisper(source, device="cpu")
    model.save_pretrained(work)
    processor.save_pretrained(work)
    return work, None


def export(
    source: str | Path,
    fmt: str,
    out: str | Path,
    quantization: str | None = None,
    eval_json: str | Path | None = None,
    license: str = "mit",
) -> Path:
    """Export ``source`` (a run folder or model spec) to ``out`` as ``fmt`` (see ``formats()``).

    ``quantization`` (ct2 only) defaults to float32, the exact weights. ``eval_json`` overrides the
    evaluation the model card quotes (default: ``RUN/eval.json`` or ``RUN/*/eval.json``).
    """
    _check_choices(fmt, quantization)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise GeodistillError(f"--out {out}: folder exists and is not empty")
    with tempfile.TemporaryDirectory(prefix="geodistill-source-") as tmp:
        folder, run_dir = resolve_source(str(source), Path(tmp) / "source")
        family = family_of_folder(folder)
        if fmt not in family.formats:
            raise GeodistillError(
                f"--format {fmt}: {source} is a {family.label}, and {RUNTIMES.get(fmt, fmt)} has no such "
                f"model; use --format {' or '.join(family.formats)}"
            )
        name = Path(str(source)).name or str(source)
        card = Card(find_eval(run_dir, eval_json), training_record(run_dir), license, name, str(source))
        family.export(folder, out, fmt, quantization, card)
    return out
