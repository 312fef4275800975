"""The multilingual real-speech test split: recorded (never synthesised) speech with transcripts in languages
other than English, from Debian packages that install offline.

Sources (each row of the manifest names its package and licence):

- Czech and Dutch: the voiced dialogue of the game Fish Fillets NG (``fillets-ng-data-cs``,
  ``fillets-ng-data-nl``: Ogg Vorbis lines spoken by voice actors), each line's transcript being the game's
  own ``script/<level>/dialogs_<lang>.lua`` string (``fillets-ng-data``). GPL-2.
- Spanish, French, Italian and Russian: Asterisk's core IVR prompts, each recorded by one professional voice
  (``asterisk-core-sounds-<lang>-g722``: 16 kHz G.722, decoded with PyAV), with the transcript listing
  ``core-sounds-<lang>.txt`` that ``asterisk-core-sounds-<lang>`` ships. CC-BY-SA-3.0 (es, fr) and
  CC-BY-3.0 (it, ru).
- English, asked for by name only (``--languages en``, never in the default set): Asterisk's English prompts
  (``asterisk-core-sounds-en-g722``, Allison Smith, CC-BY-SA-3.0). They are not a test split: they are a
  real English voice for *training* (a student that hears only synthetic voices learns the voices), and no
  English test clip comes from them (the English test split is ``geodistill.corpus.real``'s).

Transcripts are kept as the sources write them (case, punctuation, digits): evaluation normalises both sides.
Lines with annotation tags (``[tone]``) or no text, Asterisk lines with a letter lost to "?", and clips
outside 1-30 s, are left out; identical audio is kept once. From each language ``per_language`` clips
are taken in a seeded shuffle (seed 0) of its files sorted by path, so a rebuild picks the same ones.
Layout: ``<lang>/<lang>-NNNN.flac`` (16 kHz mono) plus ``manifest.jsonl`` (audio_filepath, text, duration,
language, speaker, id, source, package, licence) and an identical ``metadata.jsonl``, so the folder itself
is a data spec (audiofolder) that keeps each row's language.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from geodistill.corpus.real import audio_digest
from geodistill.data.audio import SAMPLE_RATE, load_audio
from geodistill.data.bad import BadSampleError
from geodistill.errors import DataError
from geodistill.optional import require

log = logging.getLogger("geodistill")

FILLETS = Path("/usr/share/games/fillets-ng")
ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds")
ASTERISK_DOC = Path("/usr/share/doc")
FILLETS_LICENCE = "GPL-2 (Fish Fillets NG voices, ALTAR interactive and translators)"
ASTERISK = {  # language -> (voice folder, licence); English is not in LANGUAGES (the test split): see above
    "en": ("en_US_f_Allison", "CC-BY-SA-3.0 (Allison Smith, Asterisk core sounds)"),
    "es": ("es_MX_f_Allison", "CC-BY-SA-3.0 (Allison Smith, Asterisk core sounds)"),
    "fr": ("fr_CA_f_June", "CC-BY-SA-3.0 (June Wallack, Asterisk core sounds)"),
    "it": ("it_IT_m_Carlo", "CC-BY-3.0 (Carlo Flora, Asterisk core sounds)"),
    "ru": ("ru_RU_f_IvrvoiceRU", "CC-BY-3.0 (ivrvoice.ru, Asterisk core sounds)"),
}
LANGUAGES = ("cs", "nl", "es", "fr", "it", "ru")  # Fish Fillets' two voiced translations, Asterisk's four
G722_BYTES_PER_SECOND = 8000  # G.722 is 64 kbit/s: its length is the file size / 8000
TAG = re.compile(r"\[[^\]]*\]")
# A letter the listing lost to "?" ("pu? essere", "questo ? corretto"); a real question mark ends a sentence
LOST = re.compile(r"\w\?\w|\s\?\s|\?\s+[a-zà-öø-ÿ]")
MIN_S, MAX_S = 1.0, 30.0


@dataclass(frozen=True)
class LangClip:
    path: Path
    text: str  # transcript as the source writes it
    language: str  # Whisper's code
    speaker: str
    source: str
    package: str
    licence: str
    g722: bool = False  # headerless G.722 (Asterisk's .g722 files); else any format soundfile reads

    def seconds(self) -> float:
        """Duration from the header (or, for G.722, the file size) without decoding."""
        if self.g722:
            return self.path.stat().st_size / G722_BYTES_PER_SECOND
        return sf.info(self.path).duration


def clean(text: str) -> str | None:
    """The transcript with its whitespace collapsed; None when it is empty or holds an annotation tag."""
    text = " ".join(text.split())
    return None if not text or TAG.search(text) else text


_DIALOG = re.compile(r'dialog(Id|Str)\(\s*"((?:[^"\\]|\\.)*)"')


def fillets_dialogs(lua: Path) -> dict[str, str]:
    """Dialogue id -> translated line of a Fish Fillets ``dialogs_<lang>.lua``: ``dialogId("id", font,
    english)`` followed by ``dialogStr("translation")``, Lua escapes undone."""
    out, current = {}, None
    for kind, value in _DIALOG.findall(lua.read_text(encoding="utf-8")):
        if kind == "Id":
            current = value
        elif current is not None:
            out[current] = re.sub(r"\\(.)", lambda m: " " if m[1] == "n" else m[1], value)
            current = None
    return out


def fillets_clips(root: Path, language: str) -> list[LangClip]:
    """Every voiced line of one Fish Fillets translation with its transcript: each
    ``sound/<level>/<lang>/<id>.ogg`` against ``script/<level>/dialogs_<lang>.lua``. Speaker: the dialogue
    id's character field (``m`` the small fish, ``v`` the big one, others)."""
    clips: list[LangClip] = []
    if not (root / "sound").is_dir():
        return clips
    for level in sorted(p for p in (root / "sound").iterdir() if (p / language).is_dir()):
        lua = root / "script" / level.name / f"dialogs_{language}.lua"
        lines = fillets_dialogs(lua) if lua.is_file() else {}
        for ogg in sorted((level / language).glob("*.ogg")):
            text = clean(lines.get(ogg.stem, ""))
            if text is None:
                continue
            parts = re.split(r"[-_]", ogg.stem)
            who = parts[1] if len(parts) > 2 else "x"
            clips.append(
                LangClip(ogg, text, language, f"{language}-fillets-{who}", "Fish Fillets NG voiced dialogue",
                         f"fillets-ng-data-{language}", FILLETS_LICENCE)
            )  # fmt: skip
    return clips


def asterisk_listing(listing: Path) -> dict[str, str]:
    """Prompt name (``digits/1``, ``agent-pass``) -> transcript of a ``core-sounds-<lang>.txt[.gz]`` listing
    (``name: text`` lines; ``;`` comments)."""
    opener: Callable = gzip.open if listing.suffix == ".gz" else open
    with opener(listing, "rt", encoding="utf-8-sig") as f:
        rows = [line.partition(":") for line in f if line.strip() and not line.startswith(";")]
    return {name.strip(): text.strip() for name, sep, text in rows if sep}


def asterisk_clips(sounds: Path, doc: Path, language: str) -> list[LangClip]:
    """Every G.722 prompt of one Asterisk voice that its listing transcribes."""
    voice, licence = ASTERISK[language]
    folder = sounds / voice
    listings = sorted((doc / f"asterisk-core-sounds-{language}").glob(f"core-sounds-{language}.txt*"))
    listing = listings[0] if listings else None
    if listing is None or not folder.is_dir():
        return []
    texts = asterisk_listing(listing)
    clips = []
    for g722 in sorted(folder.rglob("*.g722")):
        text = clean(texts.get(g722.relative_to(folder).with_suffix("").as_posix(), ""))
        if text is not None and not LOST.search(text):  # the Italian listing lost its accented letters
            clips.append(
                LangClip(g722, text, language, voice, "Asterisk core IVR prompts",
                         f"asterisk-core-sounds-{language}-g722", licence, g722=True)
            )  # fmt: skip
    return clips


def gather(languages: tuple[str, ...] = LANGUAGES) -> dict[str, list[LangClip]]:
    """Language -> every transcribed clip its installed packages hold (an empty list when none)."""
    return {
        lang: asterisk_clips(ASTERISK_SOUNDS, ASTERISK_DOC, lang)
        if lang in ASTERISK
        else fillets_clips(FILLETS, lang)
        for lang in languages
    }


def read_g722(path: Path) -> np.ndarray:
    """(n,) float32 16 kHz samples of a headerless G.722 file (PyAV's FFmpeg decoder)."""
    av = require("av", "demo", "reading Asterisk's G.722 prompts")
    try:
        with av.open(str(path), format="g722") as container:
            frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    except (av.error.FFmpegError, OSError) as e:
        raise BadSampleError(str(path), f"not decodable as G.722 ({e})") from None
    if not frames:
        raise BadSampleError(str(path), "no G.722 frames")
    return np.concatenate(frames).astype(np.float32) / np.float32(32768.0)


def read_clip(clip: LangClip) -> np.ndarray:
    """(n,) float32 16 kHz mono samples of a clip."""
    return read_g722(clip.path) if clip.g722 else load_audio(clip.path)


def pick(clips: list[LangClip], n: int, seen: set[str]) -> list[tuple[LangClip, np.ndarray]]:
    """Up to ``n`` (0: all) distinct clips of 1-30 s with their samples, in a seeded shuffle (seed 0) of the
    clips sorted by path; ``seen`` (audio digests) grows with each one taken."""
    order = sorted((c for c in clips if MIN_S <= c.seconds() <= MAX_S), key=lambda c: str(c.path))
    random.Random(0).shuffle(order)
    taken = []
    for clip in order:
        if n and len(taken) == n:
            break
        try:
            audio = read_clip(clip)
        except BadSampleError as e:
            log.warning("%s: skipped (%s)", clip.path, e.reason)
            continue
        digest = audio_digest(audio)
        if digest in seen or not MIN_S <= audio.size / SAMPLE_RATE <= MAX_S:
            continue
        seen.add(digest)
        taken.append((clip, audio))
    return taken


def build_multilingual(
    out: str | Path, languages: tuple[str, ...] = LANGUAGES, per_language: int = 60
) -> dict:
    """Write ``per_language`` (0: all) distinct real clips of each language under ``out``; the summary.
    A DataError names the languages with no clips (their Debian packages are not installed)."""
    out = Path(out)
    found = gather(languages)
    empty = [lang for lang, clips in found.items() if not clips]
    if empty:
        raise DataError(f"{out}: no recordings found for {', '.join(empty)} (install: {packages_for(empty)})")
    rows, seen = [], set()
    for lang, clips in found.items():
        (out / lang).mkdir(parents=True, exist_ok=True)
        for k, (clip, audio) in enumerate(pick(clips, per_language, seen)):
            uid = f"{lang}-{k:04d}"
            sf.write(out / lang / f"{uid}.flac", audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            seconds = round(audio.size / SAMPLE_RATE, 3)
            rows.append({"audio_filepath": f"{lang}/{uid}.flac", "text": clip.text, "duration": seconds,
                         "language": lang, "speaker": clip.speaker, "id": uid, "source": clip.source,
                         "package": clip.package, "licence": clip.licence})  # fmt: skip
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    for name in ("manifest.jsonl", "metadata.jsonl"):
        (out / name).write_text(text, encoding="utf-8")
    return summarise(rows)


def packages_for(languages: list[str]) -> str:
    """The Debian packages that hold ``languages``' recordings and transcripts."""
    names = []
    for lang in languages:
        if lang in ASTERISK:
            names += [f"asterisk-core-sounds-{lang}", f"asterisk-core-sounds-{lang}-g722"]
        else:
            names += ["fillets-ng-data", f"fillets-ng-data-{lang}"]
    return " ".join(dict.fromkeys(names))


def summarise(rows: list[dict]) -> dict:
    """Utterances and seconds overall and per language (with its package, licence and speakers)."""
    per: dict[str, dict] = {}
    for r in rows:
        p = per.setdefault(r["language"], {"utterances": 0, "seconds": 0.0, "speakers": set(),
                                           "package": r["package"], "licence": r["licence"]})  # fmt: skip
        p["utterances"] += 1
        p["seconds"] = round(p["seconds"] + r["duration"], 2)
        p["speakers"].add(r["speaker"])
    for p in per.values():
        p["speakers"] = len(p["speakers"])
    return {
        "utterances": len(rows),
        "seconds": round(sum(r["duration"] for r in rows), 2),
        "languages": per,
    }
