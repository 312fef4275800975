"""``geodistill export``: ship a model in a format its users load, with a model card.

The source is a run folder (``best/`` if present, else ``adapter_final/``), a saved student, or any model
spec ``geodistill.models.load_whisper`` accepts. Its student family (``geodistill.students``) writes it:
a Whisper model as ``hf`` (a plain transformers folder), ``ct2`` (CTranslate2 / faster-whisper), ``ggml``
(whisper.cpp) or ``onnx`` (ONNX Runtime graphs); a CTC student as its own safetensors folder (``hf``). A
format the family cannot hold is refused in one line.

The family writes into a temporary sibling of ``--out``, which is renamed into place once the family has
returned: an interrupted or failed export (Ctrl-C, a full disk) leaves nothing at ``--out``, so the rerun
is never refused, and whatever sits at ``--out`` is a complete export.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from geodistill.errors import GeodistillError, StorageError
from geodistill.modelcard import find_eval, training_record
from geodistill.models import load_whisper
from geodistill.models.loading import EMBEDDED, RUN_SUBDIRS
from geodistill.outdir import ENVIRONMENT_ERRNOS, reason, staged_folder
from geodistill.runfolder import RunFolder
from geodistill.students import FAMILIES, family_of_folder, student_folder
from geodistill.students.family import Card

RUNTIMES = {"hf": "transformers", "ct2": "CTranslate2", "ggml": "whisper.cpp", "onnx": "ONNX Runtime"}
# the weight types a format can be written in (the first is its default); other formats keep float32
QUANTIZATIONS: dict[str, tuple[str, ...]] = {
    "ct2": ("float32", "int8", "int8_float32", "float16"),
    "ggml": ("f16", "q8_0"),
}


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
    if quantization is None:
        return
    if fmt not in QUANTIZATIONS:
        raise GeodistillError(
            f"--quantization applies to --format {' or '.join(QUANTIZATIONS)} only "
            f"({fmt} exports keep float32)"
        )
    if quantization not in QUANTIZATIONS[fmt]:
        choices = ", ".join(QUANTIZATIONS[fmt])
        raise GeodistillError(
            f"--quantization: unknown quantisation '{quantization}' for {fmt} (choose {choices})"
        )


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
    name: str | None = None,
) -> Path:
    """Export ``source`` (a run folder or model spec) to ``out`` as ``fmt`` (see ``formats()``).

    ``quantization`` (ct2 only) defaults to float32, the exact weights. ``eval_json`` overrides the
    evaluation the model card quotes (default: ``RUN/eval.json`` or ``RUN/*/eval.json``); ``name`` titles the
    card (default: the source's folder name).
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
        name = name or Path(str(source)).name or str(source)
        card = Card(find_eval(run_dir, eval_json), training_record(run_dir), license, name, str(source))
        try:
            with staged_folder(out) as staged:
                family.export(folder, staged, fmt, quantization, card)
        except Exception as exc:  # a write the disk refused: safetensors and others say so in their own types
            if not _refused_write(exc):
                raise
            raise StorageError(f"--out {out}: cannot export ({reason(exc)}); nothing was written") from exc
    return out


def _refused_write(exc: Exception) -> bool:
    """Whether ``exc`` is the file system refusing a write (full, read-only, no permission)."""
    if isinstance(exc, GeodistillError):
        return False  # already a one-line error of its own
    inner = exc if isinstance(exc, OSError) else exc.__cause__ or exc.__context__
    if isinstance(inner, OSError) and inner.errno in ENVIRONMENT_ERRNOS:
        return True
    return reason(exc) == "no space left on device"
