"""Data specs: a folder, manifest or saved dataset named on the command line -> a list of Utterance.

A spec is a path, optionally prefixed with its kind (``librispeech:``, ``manifest:``, ``hf:``,
``audiofolder:``); without a prefix the kind is detected:

- a ``.jsonl``/``.json`` or ``.csv``/``.tsv`` file: a NeMo-style manifest (audio_filepath, text, and
  optional duration, offset, language, task, text_timestamps, speaker, id); relative paths resolve against
  the manifest's folder;
- a folder holding ``dataset_info.json``/``state.json``: a ``datasets`` dataset saved with save_to_disk;
- a folder holding ``metadata.csv``/``metadata.jsonl`` (file_name + text): an audiofolder;
- a folder with ``*.trans.txt`` files below it: LibriSpeech (speaker/chapter/speaker-chapter-utt.flac).

A row's ``language`` (a code, name or locale: "de", "German", "pt-BR") becomes Whisper's code; an unknown
one, or a ``task`` other than transcribe / translate, is refused in one line naming the row (file:line):
a typo there would train the wrong prompt on every such row.

Every listed item is checked cheaply (header + tail read, see ``audio.probe``) and its duration filtered
to [min_duration, max_duration]; what fails goes to the BadSamples log with the reason. The files are
probed in parallel and the answers stored per spec, so a later start probes only new or changed files
(``geodistill.data.probes``).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from geodistill.data.audio import hf_ref, open_hf_dataset
from geodistill.data.bad import BadSampleError, BadSamples
from geodistill.data.probes import Outcome, probe_files, store_path
from geodistill.data.tokens import TASKS, language_code
from geodistill.errors import DataError
from geodistill.outdir import reason

KINDS = ("librispeech", "manifest", "hf", "audiofolder")
AUDIO_EXTS = (".flac", ".wav", ".ogg", ".opus", ".mp3")  # searched in this order for LibriSpeech ids
AUDIO_KEYS = ("audio_filepath", "file_name", "audio", "path", "audio_path")  # manifest / metadata columns
TEXT_KEYS = ("text", "sentence", "transcription", "transcript", "normalized_text")
SPEAKER_KEYS = ("speaker", "speaker_id", "client_id")
LANGUAGE_KEYS = ("language", "lang", "locale")
TASK_KEYS = ("task",)
TIMESTAMP_KEYS = ("text_timestamps",)  # the transcript with Whisper's <|t.tt|> tokens (pseudo-labels)
DURATION_SLACK = 0.05  # seconds a manifest's offset + duration may overshoot the file (rounding)


@dataclass(frozen=True)
class Utterance:
    id: str  # unique within its spec, e.g. LibriSpeech "103-1240-0000"
    audio: str  # an audio file path, or hf://<dataset dir>#<row> for audio stored inside a saved dataset
    text: str  # transcript as the source writes it (case and punctuation kept)
    speaker: str | None = None  # speaker id, used for speaker-disjoint splits
    language: str | None = None  # Whisper's language code such as "en", when the source says
    offset: float = 0.0  # start of the segment in the file, seconds
    duration: float | None = None  # segment length in seconds (set by load_spec for every kept item)
    task: str | None = None  # "transcribe" | "translate" when the source says (else the run's data.task)
    text_timestamps: str | None = None  # the transcript with <|t.tt|> tokens, when the source has one
    where: str | None = field(default=None, compare=False)  # its row ("file:line"), for one-line errors
    # the clip already decoded, (n,) float32 16 kHz mono (a streamed hub: row): load_audio returns it
    samples: np.ndarray | None = field(default=None, compare=False, repr=False)


def _language(value, where: str) -> str | None:
    """Whisper's code of a row's language (None when the row has none); DataError naming ``where``."""
    if value is None:
        return None
    code = language_code(str(value))
    if code is None:
        raise DataError(f"{where}: language {value!r} is not a Whisper language (e.g. 'en', 'de', 'english')")
    return code


def _task(value, where: str) -> str | None:
    if value is None:
        return None
    if value not in TASKS:
        raise DataError(f"{where}: task {value!r}: expected 'transcribe' or 'translate'")
    return str(value)


def parse_spec(spec: str | Path) -> tuple[str, Path]:
    """(kind, path) of a spec; raises DataError when the path is missing or its kind cannot be told."""
    text = str(spec)
    if text.startswith("hub:"):
        raise DataError(
            f"{text}: hub: specs are streamed (data.train, evaluate --data), not listed; see data/hub.py"
        )
    kind, sep, rest = text.partition(":")
    if sep and kind in KINDS:
        path = Path(rest).expanduser()
    else:
        kind, path = "", Path(text).expanduser()
    if not path.exists():
        raise DataError(f"{path}: data spec not found")
    return kind or detect_kind(path), path


def detect_kind(path: Path) -> str:
    if path.is_file():
        if path.suffix.lower() in (".jsonl", ".json", ".ndjson", ".csv", ".tsv"):
            return "manifest"
        raise DataError(
            f"{path}: not a manifest (.jsonl/.csv) nor a folder; cannot tell the data spec's kind"
        )
    if any((path / n).is_file() for n in ("dataset_info.json", "state.json", "dataset_dict.json")):
        return "hf"
    if any((path / n).is_file() for n in ("metadata.csv", "metadata.jsonl")):
        return "audiofolder"
    for _, _, files in os.walk(path):
        if any(f.endswith(".trans.txt") for f in files):
            return "librispeech"
    raise DataError(
        f"{path}: no *.trans.txt (LibriSpeech), metadata.csv/jsonl (audiofolder) or saved dataset found; "
        "pass kind:path or a .jsonl/.csv manifest"
    )


def _pick(row: dict, keys: tuple[str, ...]):
    return next((row[k] for k in keys if k in row and row[k] not in (None, "")), None)


def _decode_line(raw: bytes, where: str, bad: BadSamples) -> str | None:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad.add(where, f"line is not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})")
        return None


def _files_by_stem(files: list[str]) -> dict[str, str]:
    """stem -> file name; a known audio extension wins over others (so x.flac beats x.txt or x.m4a)."""
    rank = {ext: i for i, ext in enumerate(AUDIO_EXTS)}
    best: dict[str, str] = {}
    for f in sorted(files):
        stem, ext = os.path.splitext(f)
        if f.endswith(".trans.txt") or stem.startswith("."):
            continue
        if stem not in best or rank.get(ext, len(rank)) < rank.get(
            os.path.splitext(best[stem])[1], len(rank)
        ):
            best[stem] = f
    return best


def _looped(folder: str, names: list[str]) -> set[str]:
    """The ``names`` in ``folder`` that are symbolic links going round in a loop (nothing is behind them)."""
    found = set()
    for name in names:
        path = os.path.join(folder, name)
        if os.path.islink(path):
            try:
                os.stat(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    found.add(name)
    return found


def read_librispeech(root: Path, bad: BadSamples) -> list[Utterance]:
    """speaker/chapter/speaker-chapter-utt.flac + speaker-chapter.trans.txt ("ID TEXT" lines), via os.walk.

    A folder that cannot be listed (no permission) and a symbolic link loop are bad items with that
    reason: neither is dropped silently, nor called a missing file."""

    def unreadable(exc: OSError) -> None:
        bad.add(exc.filename, f"folder cannot be read ({reason(exc)}): its files are not listed")

    utts, listed = [], set()
    for folder, dirs, files in os.walk(root, onerror=unreadable):
        dirs.sort()
        loops = _looped(folder, files)  # a link loop is no folder to os.walk: it lands among the files
        for name in sorted(loops):
            bad.add(Path(folder) / name, "symbolic link loop (too many levels of symbolic links): not read")
        audio = _files_by_stem([f for f in files if f not in loops])
        looped = {os.path.splitext(f)[0] for f in loops}
        rel = Path(folder).relative_to(root).parts
        for name in sorted(f for f in files if f.endswith(".trans.txt") and f not in loops):
            trans = Path(folder) / name
            try:
                lines = trans.read_bytes().splitlines()
            except OSError as exc:
                bad.add(
                    trans, f"transcript file cannot be read ({reason(exc)}): its utterances are not listed"
                )
                continue
            for n, raw in enumerate(lines, 1):
                line = _decode_line(raw, f"{trans}:{n}", bad)
                if line is None or not line.strip():
                    continue
                uid, _, text = line.strip().partition(" ")
                listed.add(uid)
                if uid not in audio and uid in looped:
                    continue  # its audio is a link loop, reported above
                speaker = rel[-2] if len(rel) >= 2 else uid.split("-")[0]
                path = Path(folder) / audio.get(uid, uid + AUDIO_EXTS[0])
                utts.append(
                    Utterance(
                        id=uid, audio=str(path), text=text.strip(), speaker=speaker, where=f"{trans}:{n}"
                    )
                )
        for stem in sorted(set(audio) - listed):
            if audio[stem].endswith(AUDIO_EXTS) and any(f.endswith(".trans.txt") for f in files):
                bad.add(Path(folder) / audio[stem], "audio file has no line in the folder's *.trans.txt")
    return utts


def _derived_id(path: Path, base: Path, offset: float, owners: dict[str, object]) -> str:
    """The id of a row without one: from the file name (relative to ``base`` when inside it), else the full
    path (without, then with its suffix), else that plus a counter, the first of them no other clip holds.

    Stable: ``owners`` maps each id given out to its clip (path, offset), so one clip always gets the one
    id, however often it is listed; ``load_spec`` then keeps its first row and logs the others as
    duplicates of that id.
    """
    clip = (os.path.abspath(path), offset)  # "a.wav" and "/data/a.wav" from /data are one clip
    rel = os.path.relpath(path, base)
    full = str(path).strip(os.sep).replace(os.sep, "-")
    stems = [os.path.splitext(path.name if rel.startswith("..") else rel)[0].replace(os.sep, "-")]
    stems += [os.path.splitext(full)[0], full]
    n = 1
    while True:
        for stem in stems:
            uid = f"{stem}-{offset:.2f}" if offset else stem
            if owners.setdefault(uid, clip) == clip:
                return uid
        n += 1
        stems = [f"{full}-{n}"]


def _number(value) -> float | None:
    """A manifest number (JSON number or numeric string); None when absent; raises ValueError otherwise."""
    if value in (None, ""):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(value)
    return float(value)


def _segment(row: dict) -> tuple[float, float | None] | str:
    """(offset, duration) of a manifest row, or the reason they are unusable (NaN, negative, not a number)."""
    try:
        offset, duration = _number(row.get("offset")), _number(row.get("duration"))
    except (TypeError, ValueError):
        return f"offset/duration is not a number ({row.get('offset')!r}, {row.get('duration')!r})"
    for name, value in (("offset", offset), ("duration", duration)):
        if value is not None and not math.isfinite(value):
            return f"{name} is not a finite number ({value})"
    if offset is not None and offset < 0:
        return f"offset must be >= 0 s, got {offset:g}"
    if duration is not None and duration <= 0:
        return f"duration must be > 0 s, got {duration:g}"
    return offset or 0.0, duration


def _row_utterance(
    row: dict, base: Path, where: str, bad: BadSamples, owners: dict[str, object]
) -> Utterance | None:
    """One manifest/metadata row -> Utterance (None, with the reason logged, when a field is unusable)."""
    audio = _pick(row, AUDIO_KEYS)
    if audio is None:
        bad.add(where, f"no audio path (one of {', '.join(AUDIO_KEYS)})")
        return None
    path = Path(str(audio)).expanduser()
    path = path if path.is_absolute() else base / path
    segment = _segment(row)
    if isinstance(segment, str):
        bad.add(where, segment)
        return None
    offset, duration = segment
    text = _pick(row, TEXT_KEYS)
    if text is not None and not isinstance(text, str):
        bad.add(where, f"text is not a string (got {type(text).__name__} {text!r:.60})")
        return None
    given = row.get("id") or row.get("utt_id")
    uid = str(given) if given else _derived_id(path, base, offset, owners)
    if given:
        owners.setdefault(uid, where)  # a derived id never takes a given one
    speaker, stamped = _pick(row, SPEAKER_KEYS), _pick(row, TIMESTAMP_KEYS)
    return Utterance(
        id=uid,
        audio=str(path),
        text=(text or "").strip(),
        speaker=None if speaker is None else str(speaker),
        language=_language(_pick(row, LANGUAGE_KEYS), where),
        offset=offset,
        duration=duration,
        task=_task(_pick(row, TASK_KEYS), where),
        text_timestamps=None if stamped is None else str(stamped),
        where=where,
    )


def _has_surrogates(value) -> bool:
    return isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value)


def _csv_rows(path: Path, bad: BadSamples) -> Iterator[tuple[str, dict]]:
    # surrogateescape keeps going past bad bytes; the rows that hold them are reported, not the file.
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter="\t" if path.suffix.lower() == ".tsv" else ","
    )
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if any(_has_surrogates(v) or _has_surrogates(k) for k, v in row.items()):
            bad.add(where, "line is not valid UTF-8")
        else:
            yield where, row


def _json_rows(path: Path, bad: BadSamples) -> Iterator[tuple[str, object]]:
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    if path.suffix.lower() == ".json" and data.lstrip().startswith(b"["):  # one JSON array, not JSON lines
        try:
            rows = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: not a readable JSON array ({e})") from None
        yield from ((f"{path}[{k}]", row) for k, row in enumerate(rows))
        return
    for n, raw in enumerate(data.splitlines(), 1):
        line = _decode_line(raw, f"{path}:{n}", bad)
        if line is None or not line.strip():
            continue
        try:
            yield f"{path}:{n}", json.loads(line)
        except json.JSONDecodeError as e:
            bad.add(f"{path}:{n}", f"not valid JSON ({e.msg})")


def read_manifest(path: Path, bad: BadSamples, base: Path | None = None) -> list[Utterance]:
    """JSONL (one object a line), a JSON array, or CSV/TSV with a header; paths relative to ``base``."""
    base = base or path.parent
    rows = _csv_rows(path, bad) if path.suffix.lower() in (".csv", ".tsv") else _json_rows(path, bad)
    utts: list[Utterance] = []
    owners: dict[
        str, object
    ] = {}  # id -> the clip (path, offset) it was derived for, or the row that gave it
    for where, row in rows:
        if not isinstance(row, dict):
            bad.add(where, "not a JSON object")
        elif (utt := _row_utterance(row, base, where, bad, owners)) is not None:
            utts.append(utt)
    return utts


def read_audiofolder(folder: Path, bad: BadSamples) -> list[Utterance]:
    for name in ("metadata.jsonl", "metadata.csv"):
        if (folder / name).is_file():
            return read_manifest(folder / name, bad, base=folder)
    raise DataError(f"{folder}: audiofolder without metadata.jsonl or metadata.csv")


def read_hf(folder: Path, bad: BadSamples) -> list[Utterance]:
    """A dataset saved with ``save_to_disk``: audio column + text/sentence/transcription column."""
    try:
        ds, audio_col = open_hf_dataset(str(folder.resolve()))
    except BadSampleError as e:
        raise DataError(str(e)) from None
    text_col = next((k for k in TEXT_KEYS if k in ds.column_names), None)
    if text_col is None:
        raise DataError(
            f"{folder}: no text column (one of {', '.join(TEXT_KEYS)}; has {', '.join(ds.column_names)})"
        )
    keys = ("id", *SPEAKER_KEYS, *LANGUAGE_KEYS, *TASK_KEYS, *TIMESTAMP_KEYS)
    meta = ds.select_columns([text_col, *[k for k in keys if k in ds.column_names]])
    utts = []
    for i, row in enumerate(meta):
        speaker, stamped, where = _pick(row, SPEAKER_KEYS), _pick(row, TIMESTAMP_KEYS), f"{folder} row {i}"
        utts.append(
            Utterance(
                id=str(row.get("id") or f"{folder.name}-{i:06d}"),
                audio=hf_ref(folder, i),
                text=str(row[text_col] or "").strip(),
                speaker=None if speaker is None else str(speaker),
                language=_language(_pick(row, LANGUAGE_KEYS), where),
                task=_task(_pick(row, TASK_KEYS), where),
                text_timestamps=None if stamped is None else str(stamped),
                where=where,
            )
        )
    return utts


READERS = {
    "librispeech": read_librispeech,
    "manifest": read_manifest,
    "hf": read_hf,
    "audiofolder": read_audiofolder,
}


def _checked(
    utt: Utterance, bad: BadSamples, lo: float, hi: float, lengths: dict[str, Outcome], require_text: bool
):
    """The utterance with its duration set, or None (reason logged) when it is unusable or out of range.
    ``lengths``: each audio ref's probed duration or BadSampleError (``probes.probe_files``)."""
    if require_text and not utt.text:
        bad.add(utt, "empty transcript")
        return None
    outcome = lengths[utt.audio]
    if isinstance(outcome, BadSampleError):
        bad.add(outcome.item, outcome.reason)
        return None
    total = outcome
    if utt.duration is not None and utt.offset + utt.duration > total + DURATION_SLACK:
        bad.add(
            utt,
            f"segment ends at {utt.offset + utt.duration:.2f} s, past the end of the file ({total:.2f} s)",
        )
        return None
    duration = utt.duration if utt.duration is not None else total - utt.offset
    if duration <= 0:
        bad.add(utt, f"offset {utt.offset:g} s is past the end of the file ({total:.2f} s)")
    elif duration < lo:
        bad.add(utt, f"too short ({duration:.2f} s < min_duration {lo:g} s)")
    elif duration > hi:
        bad.add(utt, f"too long ({duration:.2f} s > max_duration {hi:g} s)")
    else:
        return replace(utt, duration=duration)
    return None


def load_spec(
    spec: str | Path,
    bad: BadSamples | None = None,
    min_duration: float = 1.0,
    max_duration: float = 30.0,
    require_text: bool = True,
) -> list[Utterance]:
    """Every usable utterance of ``spec``, in source order, each with ``duration`` set.

    Unusable items (missing/empty/corrupt/unsupported audio, empty transcript, non-UTF-8 line, duplicate id,
    duration outside [min_duration, max_duration]) go to ``bad`` with the reason; with ``bad.strict`` the
    first one raises. ``require_text=False`` keeps utterances without a transcript (for pseudo-labelling).

    A clip listed again (same audio and offset) under the same id, given or derived (a row without an id
    gets one per clip: ``_derived_id``), is kept once; the repeats are logged "duplicate of '<id>'".
    """
    kind, path = parse_spec(spec)
    bad = bad if bad is not None else BadSamples()
    listed = READERS[kind](path, bad)
    wanted = (u.audio for u in listed if u.text or not require_text)
    lengths = probe_files(wanted, store_path(kind, path))
    kept, seen = [], {}
    for utt in listed:
        if utt.id in seen:
            first = seen[utt.id]
            if (os.path.abspath(first.audio), first.offset) == (os.path.abspath(utt.audio), utt.offset):
                bad.add(utt, f"duplicate of {utt.id!r} (the same clip listed again)")
            else:
                bad.add(utt, f"duplicate id {utt.id!r} (first used by {first.audio})")
            continue
        seen[utt.id] = utt
        checked = _checked(utt, bad, min_duration, max_duration, lengths, require_text)
        if checked is not None:
            kept.append(checked)
    return kept
