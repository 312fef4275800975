"""Pseudo-labels: the teacher's transcripts written as a training manifest (JSONL, one utterance a line).

Training a student on its teacher's transcripts (instead of, or besides, human ones) is how distil-whisper
labels its data; filtering out the utterances where the teacher disagrees most with the ground truth
(normalised WER above a threshold) drops the teacher's hallucinations before the student copies them.

The utterances are transcribed in parts of a fixed size, each written to ``<out>.parts/`` as it is done
(an interrupted run resumes keeping them); under ``torchrun`` / ``accelerate launch`` each rank transcribes
its own parts (geodistill.parallel) and rank 0 scores, filters and writes the manifest once all are done,
so the manifest is the same for any number of processes.

Each utterance is transcribed in its own language when its data names one (else ``language``, else
detected), with its own task when its data names one (else ``task``: transcribe, or translate into
English), and its row records the prompt it was made with: ``language`` and ``task``. With
``timestamps`` the teacher also writes its segment times: ``text_timestamps`` holds the transcript with
Whisper's ``<|t.tt|>`` tokens (``text`` stays plain), which ``data.timestamp_probability`` trains on.

This module sits on top of the data layer and uses the evaluate package to transcribe; nothing in
``geodistill.data`` imports it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

from geodistill.data import BadSamples, Utterance
from geodistill.data.audio import HF_PREFIX
from geodistill.data.tokens import TASKS, plain_text
from geodistill.decoding.options import DecodeOptions
from geodistill.decoding.wer import wer_scores
from geodistill.errors import GeodistillError
from geodistill.evaluate.run import load_utterances
from geodistill.evaluate.transcribe import load_model
from geodistill.parallel import all_done, from_main, owned_parts, part_written, teacher_world
from geodistill.progress import progress
from geodistill.students.seq2seq.decode import decode_utterances
from geodistill.teacher.cache.fingerprint import teacher_fingerprint

PART_UTTERANCES = 256  # default utterances a part (rounded down to a multiple of the batch size, >= 1 batch)


def _audio_path(utt: Utterance) -> str:
    # hf://<dir>#<row> references name audio inside a saved dataset, not a file; they are kept verbatim
    return utt.audio if utt.audio.startswith(HF_PREFIX) else str(Path(utt.audio).resolve())


def _row(utt: Utterance, text: str, duration: float, settings: dict) -> dict:
    row = {
        "id": utt.id,
        "audio_filepath": _audio_path(utt),
        "text": plain_text(text) if settings["timestamps"] else text,
        "duration": utt.duration if utt.duration is not None else duration,
        "offset": utt.offset,
        "speaker": utt.speaker,
        "language": utt.language or settings["language"],
        "task": utt.task or settings["task"],
    }
    if settings["timestamps"]:
        row["text_timestamps"] = text
    return row


def _part_path(parts: Path, p: int) -> Path:
    return parts / f"part-{p:05d}.jsonl"


def _read_part(path: Path, ids: list[str], settings: dict) -> list[dict] | None:
    """A finished part's lines (header first) when it holds ``ids`` made with ``settings``, else None."""
    if not path.is_file():
        return None
    try:
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, ValueError):
        return None
    ok = lines and lines[0].get("ids") == ids and lines[0].get("settings") == settings
    return lines if ok and len(lines) == 1 + lines[0]["n_rows"] else None


def _write_part(path: Path, header: dict, rows: list[dict]) -> None:
    """Header line, then one row a line; written to a temporary name first (a killed run leaves no half)."""
    tmp = path.with_name(f".{path.name}.tmp")
    lines = [header, *rows]
    tmp.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    os.replace(tmp, path)


def _transcribe_parts(model, processor, utts, parts: Path, settings: dict, world) -> None:
    """Transcribe this rank's parts that are not on disk yet (rows with the utterance's ``ref`` text)."""
    size = settings["part_size"]
    parts.mkdir(parents=True, exist_ok=True)
    mine = list(owned_parts(math.ceil(len(utts) / size), world))
    total = sum(len(utts[p * size : (p + 1) * size]) for p in mine)
    bar = progress(total=total, desc="pseudo-label", unit="clip", show=world.is_main)
    for ordinal, p in enumerate(mine, start=1):
        chunk = utts[p * size : (p + 1) * size]
        ids = [u.id for u in chunk]
        if _read_part(_part_path(parts, p), ids, settings) is not None:
            bar.update(len(chunk))  # done by an earlier run
            continue
        bad = BadSamples()
        # each (language, task) with its own prompt
        groups: dict[tuple[str | None, str], list[Utterance]] = {}
        for u in chunk:
            groups.setdefault((u.language or settings["language"], u.task or settings["task"]), []).append(u)
        found: dict[str, dict] = {}
        for (lang, task), group in groups.items():
            options = DecodeOptions(
                language=lang,
                task=task,
                batch_size=settings["batch_size"],
                max_new_tokens=settings["max_new_tokens"],
                timestamps=settings["timestamps"],
            )
            decoded = decode_utterances(model, processor, group, bad, options)
            triples = zip(decoded.utterances, decoded.hypotheses, decoded.audio_seconds, strict=True)
            found.update({u.id: {**_row(u, hyp, secs, settings), "ref": u.text} for u, hyp, secs in triples})
        rows = [found[u.id] for u in chunk if u.id in found]
        header = {"ids": ids, "settings": settings, "n_rows": len(rows), "bad": bad.items}
        _write_part(_part_path(parts, p), header, rows)
        part_written(ordinal, world)
        bar.update(len(chunk))
    bar.close()


def _gather_parts(parts: Path, utts, settings: dict) -> tuple[list[dict], list[dict]]:
    """(rows, bad entries) of every part in part order, i.e. in the order of ``utts``."""
    size, rows, bad = settings["part_size"], [], []
    for p in range(math.ceil(len(utts) / size)):
        lines = _read_part(_part_path(parts, p), [u.id for u in utts[p * size : (p + 1) * size]], settings)
        if lines is None:
            raise GeodistillError(
                f"{_part_path(parts, p)}: part missing or incomplete after every rank finished"
            )
        rows += lines[1:]
        bad += lines[0]["bad"]
    return rows, bad


def _score_and_write(rows: list[dict], out: Path, wer_threshold: float | None, language: str | None) -> dict:
    """Add reference / teacher_wer where there is ground truth, drop by threshold, write ``out``."""

    refs = [r.pop("ref") for r in rows]
    labelled = [i for i, ref in enumerate(refs) if ref and ref.strip()]
    # a translation is English whatever the clip's language: its reference (the row's text) is scored so
    langs = [
        "en" if rows[i]["task"] == "translate" else rows[i]["language"] or language or "en" for i in labelled
    ]
    scores = wer_scores([refs[i] for i in labelled], [rows[i]["text"] for i in labelled], langs)
    for i, per_utt in zip(labelled, scores["per_utterance"], strict=True):
        rows[i].update(reference=refs[i], teacher_wer=per_utt["wer"])
    kept = [
        r for r in rows if r["text"] and (wer_threshold is None or r.get("teacher_wer", 0.0) <= wer_threshold)
    ]
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in kept)
    os.replace(tmp, out)
    return {
        "n_written": len(kept),
        "n_dropped": len(rows) - len(kept),
        "wer": scores["wer"] if labelled else None,
    }


def pseudo_label(
    teacher,
    data,
    out: str | Path,
    wer_threshold: float | None = None,
    batch_size: int = 8,
    device: str = "auto",
    language: str | None = None,
    max_new_tokens: int | None = None,
    part_size: int = PART_UTTERANCES,
    timestamps: bool = False,
    dtype: str = "auto",
    task: str | None = None,
) -> dict:
    """Transcribe ``data`` with ``teacher`` and write the manifest ``out`` (JSONL).

    ``teacher`` is a model spec or a loaded (model, processor); ``data`` a data spec or a list of Utterance.
    Each line holds audio_filepath (absolute), text (the teacher's transcript), duration, offset, speaker,
    language and, where the utterance has a ground-truth text, ``reference`` and ``teacher_wer`` (normalised,
    this utterance alone). Such utterances are dropped when teacher_wer > ``wer_threshold``; utterances
    without ground truth are kept. Empty teacher transcripts are dropped too (nothing to learn; ``load_spec``
    would refuse them as training items). Unreadable audio is skipped and listed in ``<out>.bad.jsonl``.
    Returns {"n_in", "n_written", "n_dropped", "n_skipped", "wer"} where wer is the teacher's corpus WER on
    the utterances that have ground truth (None when none has). Under a launcher every rank transcribes
    its share of ``<out>.parts/`` and returns the same summary; rank 0 writes ``out`` (module docstring).
    part_size: utterances a part, rounded down to a multiple of batch_size (so the batches, hence the
    transcripts, are those of one pass over the whole list). timestamps: also write each transcript with
    the teacher's timestamp tokens (``text_timestamps``, module docstring). dtype: the teacher's weights
    (auto: fp16 on CUDA, fp32 on the CPU; ``geodistill.decoding.options.resolve_dtype``); parts made at
    another dtype are transcribed again. task: "transcribe" (None) or "translate" (into English), for rows
    whose data names no task of their own; each row records the task it was made with (``task``).
    """
    if wer_threshold is not None and wer_threshold < 0:
        raise ValueError(f"wer_threshold must be >= 0, got {wer_threshold}")
    if batch_size < 1 or part_size < 1:
        raise ValueError(f"batch_size and part_size must be >= 1, got {batch_size} and {part_size}")
    if task is not None and task not in TASKS:
        raise GeodistillError(f"--task: unknown '{task}' (choose {' or '.join(TASKS)})")
    world = teacher_world(device)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bad = BadSamples(out.with_suffix(".bad.jsonl") if world.is_main else None)
    model, processor, _ = load_model(teacher, device, dtype=dtype)
    utts = load_utterances(data, bad, require_text=False)
    n_bad_load = bad.count
    settings = {
        "teacher_fingerprint": teacher_fingerprint(model),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "language": language,
        "task": task or "transcribe",
        "timestamps": timestamps,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "part_size": batch_size * max(1, part_size // batch_size),
    }
    parts = out.with_name(out.name + ".parts")
    _transcribe_parts(model, processor, utts, parts, settings, world)
    all_done(world)
    summary = None
    if world.is_main:
        rows, bad_items = _gather_parts(parts, utts, settings)
        for entry in bad_items:  # the file's lines, as a single process would have written them
            bad.add(entry["item"], entry["reason"])
        written = _score_and_write(rows, out, wer_threshold, language)
        summary = {"n_in": len(utts) + n_bad_load, **written, "n_skipped": n_bad_load + len(bad_items)}
        summary["wer"] = summary.pop("wer")  # the key order the summary always had
        shutil.rmtree(parts)
    return from_main(summary, world)
