"""``transcribe``'s output formats: a timed Transcript (``geodistill.decoding.segments``) as txt, json, srt,
vtt or tsv, the formats and file names openai-whisper's ``--output_format`` writes.

- ``txt``: the transcript, one line (what ``transcribe`` prints);
- ``json``: ``{"text", "segments": [{"id", "start", "end", "text", "words"?}], "language", "duration",
  "model", "engine", "audio"}``, times in seconds; ``words`` (``{"start", "end", "word", "probability"}``)
  only with word timestamps (``JSON_SCHEMA`` is the exact shape);
- ``srt``: SubRip, written by the ``srt`` package, one cue per segment;
- ``vtt``: WebVTT, written by ``webvtt-py``, one cue per segment;
- ``tsv``: ``start<TAB>end<TAB>text`` with integer milliseconds, openai-whisper's layout.
Both subtitle packages come with ``pip install 'geodistill[subtitles]'``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path

from geodistill.decoding.segments import Transcript
from geodistill.errors import GeodistillError
from geodistill.optional import require

FORMATS = ("txt", "json", "srt", "vtt", "tsv")
ALL = "all"
NEEDS_TIMES = ("json", "srt", "vtt", "tsv")  # formats that carry segment times

_TIME = {"type": "number", "minimum": 0}
_WORD = {
    "type": "object",
    "required": ["start", "end", "word", "probability"],
    "properties": {
        "start": _TIME,
        "end": _TIME,
        "word": {"type": "string"},
        "probability": {"type": ["number", "null"]},
    },
}
JSON_SCHEMA = {  # JSON Schema (draft 2020-12) of the json format, checked in the tests
    "type": "object",
    "required": ["text", "segments", "language", "duration", "model", "engine", "audio"],
    "properties": {
        "text": {"type": "string"},
        "language": {"type": ["string", "null"]},
        "duration": _TIME,
        "model": {"type": "string"},
        "engine": {"type": "string"},
        "audio": {"type": "string"},
        "segments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "start", "end", "text"],
                "properties": {
                    "id": {"type": "integer"},
                    "start": _TIME,
                    "end": _TIME,
                    "text": {"type": "string"},
                    "words": {"type": "array", "items": _WORD},
                },
            },
        },
    },
}


def parse_formats(values: Iterable[str] | None) -> tuple[str, ...]:
    """``--output-format`` values (each comma-separated, ``all`` = every format) -> the formats, in
    ``FORMATS`` order; an unknown name is a one-line GeodistillError."""
    asked = [v.strip().lower() for value in values or () for v in value.split(",") if v.strip()]
    unknown = [v for v in asked if v not in FORMATS and v != ALL]
    if unknown:
        raise GeodistillError(
            f"--output-format: unknown format {unknown[0]!r} (choose from {', '.join(FORMATS)} or {ALL})"
        )
    return FORMATS if ALL in asked else tuple(f for f in FORMATS if f in asked)


def _srt(t: Transcript) -> str:
    srt = require("srt", "subtitles", "--output-format srt")
    cues = [
        srt.Subtitle(i, timedelta(seconds=s.start), timedelta(seconds=s.end), s.text)
        for i, s in enumerate(t.segments, 1)
    ]
    return srt.compose(cues, reindex=False)


def _vtt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def _vtt(t: Transcript) -> str:
    webvtt = require("webvtt", "subtitles", "--output-format vtt", package="webvtt-py")
    vtt = webvtt.WebVTT(
        captions=[webvtt.Caption(_vtt_time(s.start), _vtt_time(s.end), s.text) for s in t.segments]
    )
    return vtt.content


def _tsv(t: Transcript) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter="\t", lineterminator="\n")
    writer.writerow(["start", "end", "text"])
    for s in t.segments:
        writer.writerow([round(s.start * 1000), round(s.end * 1000), s.text])
    return out.getvalue()


def as_json(t: Transcript, model: str, engine: str, audio: str) -> dict:
    """The json format's object (``JSON_SCHEMA``); ``words`` per segment only when the segments have words."""
    segments = []
    for i, s in enumerate(t.segments):
        row: dict = {"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
        if any(x.words for x in t.segments):
            row["words"] = [
                {
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "word": w.text,
                    "probability": w.probability,
                }
                for w in s.words
            ]
        segments.append(row)
    return {
        "text": t.text,
        "segments": segments,
        "language": t.language,
        "duration": round(t.duration, 3),
        "model": model,
        "engine": engine,
        "audio": audio,
    }


def render(fmt: str, t: Transcript, model: str, engine: str, audio: str) -> str:
    """``t`` in the format ``fmt`` (one of ``FORMATS``); ``model``, ``engine``, ``audio`` go into json."""
    if fmt == "txt":
        return t.text + "\n"
    if fmt == "json":
        return json.dumps(as_json(t, model, engine, audio), ensure_ascii=False, indent=2) + "\n"
    return {"srt": _srt, "vtt": _vtt, "tsv": _tsv}[fmt](t)


def output_names(paths: Sequence[str | Path], formats: Sequence[str], out_dir: Path) -> list[dict[str, Path]]:
    """Each input's output files, ``out_dir/<stem>.<format>`` (openai-whisper's naming); two inputs with the
    same stem are a one-line GeodistillError (one would overwrite the other)."""
    seen: dict[str, str | Path] = {}
    for p in paths:
        stem = Path(p).stem
        if stem in seen:
            raise GeodistillError(
                f"--output-dir: {seen[stem]} and {p} would both be written as {out_dir / stem}.*; "
                "rename one or transcribe them into different folders"
            )
        seen[stem] = p
    return [{f: out_dir / f"{Path(p).stem}.{f}" for f in formats} for p in paths]
