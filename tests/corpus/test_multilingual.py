"""Multilingual real-speech test split: Fish Fillets dialogue and Asterisk prompt listings read right, the
per-language pick, dedupe and the written manifest (with its language column) on tiny built package trees."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import soundfile as sf

from geodistill import cli
from geodistill.cli import data as data_cli
from geodistill.corpus import multilingual as ml
from geodistill.corpus import requirements
from geodistill.data import load_spec
from geodistill.data.bad import BadSampleError
from geodistill.errors import DataError

from ..data.conftest import tone

av = pytest.importorskip("av")  # the demo extra's G.722 decoder (and, here, encoder)

LUA = """
dialogId("let-m-divna", "font_small", "What kind of strange ship is that?")
dialogStr("Co je to za divnou lo\u010f?")

dialogId("let-v-oko", "font_big", "A (silent) witness")
dialogStr(
"\\"N\u011bm\u00fd\\" sv\u011bdek")

dialogId("b1-2", "font_big", "B1")
dialogStr("")

dialogId("let-v-notvoiced", "font_big", "Not voiced")
dialogStr("Tohle nikdo ne\u0159\u00edk\u00e1.")
"""

LISTING = """\ufeff; Core Asterisk Sounds in Italian

agent-pass: Digitare la propria password.
beep: [tono singolo]
conf-full: La conferenza ? piena.
not-avail: Non pu? essere
vm-changeto: Cambiare cartella?
digits/1: uno
"""


def write_g722(path, samples: np.ndarray) -> None:
    """Encode 16 kHz float samples as headerless G.722, as Asterisk ships its wideband prompts."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="g722") as out:
        stream = out.add_stream("g722", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            (samples * 32767).astype(np.int16)[None, :], format="s16", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)


def fake_fillets(root):
    level = root / "script" / "airplane"
    level.mkdir(parents=True)
    (level / "dialogs_cs.lua").write_text(LUA, encoding="utf-8")
    sound = root / "sound" / "airplane" / "cs"
    sound.mkdir(parents=True)
    for stem, seed in (("let-m-divna", 0), ("let-v-oko", 1), ("b1-2", 2), ("let-x-untranscribed", 3)):
        sf.write(
            sound / f"{stem}.ogg", tone(1.5, rate=22050, seed=seed), 22050, format="OGG", subtype="VORBIS"
        )
    return root


def fake_asterisk(sounds, doc):
    listing = doc / "asterisk-core-sounds-it" / "core-sounds-it.txt.gz"
    listing.parent.mkdir(parents=True)
    with gzip.open(listing, "wt", encoding="utf-8") as f:
        f.write(LISTING)
    voice = sounds / "it_IT_m_Carlo"
    for k, name in enumerate(
        ("agent-pass", "beep", "conf-full", "not-avail", "vm-changeto", "digits/1", "not-listed")
    ):
        write_g722(voice / f"{name}.g722", tone(1.2 + 0.1 * k, seed=10 + k))


def test_clean_drops_tags_and_empty_lines():
    assert ml.clean("  Agente   conectado ") == "Agente conectado"
    assert ml.clean("[tono simple]") is None and ml.clean(" ") is None


def test_fillets_lines_are_matched_to_their_recordings(tmp_path):
    root = fake_fillets(tmp_path / "fillets")
    assert ml.fillets_dialogs(root / "script" / "airplane" / "dialogs_cs.lua")["let-v-oko"] == '"Němý" svědek'
    clips = ml.fillets_clips(root, "cs")
    assert [(c.path.stem, c.text, c.speaker) for c in clips] == [
        ("let-m-divna", "Co je to za divnou loď?", "cs-fillets-m"),
        ("let-v-oko", '"Němý" svědek', "cs-fillets-v"),
    ]  # the empty line and the recording without a line are left out
    assert {(c.language, c.package) for c in clips} == {("cs", "fillets-ng-data-cs")}
    assert ml.fillets_clips(root, "nl") == []


def test_asterisk_prompts_get_their_listing_lines(tmp_path):
    fake_asterisk(tmp_path / "sounds", tmp_path / "doc")
    clips = ml.asterisk_clips(tmp_path / "sounds", tmp_path / "doc", "it")
    assert [
        (c.path.relative_to(tmp_path / "sounds" / "it_IT_m_Carlo").as_posix(), c.text) for c in clips
    ] == [
        ("agent-pass.g722", "Digitare la propria password."),
        ("digits/1.g722", "uno"),
        ("vm-changeto.g722", "Cambiare cartella?"),
    ]  # not the tone, nor "La conferenza ? piena" (the listing lost its è), nor the unlisted prompt
    assert all(c.g722 and "CC-BY-3.0" in c.licence and c.language == "it" for c in clips)
    assert abs(clips[0].seconds() - 1.2) < 0.05  # from the file size, 8000 bytes a second
    audio = ml.read_clip(clips[0])
    assert audio.dtype == np.float32 and abs(audio.size / 16000 - 1.2) < 0.05
    assert 0.1 < float(np.abs(audio).max()) < 0.5  # the 0.3 sine, decoded at its level
    assert ml.asterisk_clips(tmp_path / "sounds", tmp_path / "doc", "ru") == []


def test_build_picks_per_language_dedupes_and_writes_a_language_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr(ml, "FILLETS", fake_fillets(tmp_path / "fillets"))
    fake_asterisk(tmp_path / "sounds", tmp_path / "doc")
    monkeypatch.setattr(ml, "ASTERISK_SOUNDS", tmp_path / "sounds")
    monkeypatch.setattr(ml, "ASTERISK_DOC", tmp_path / "doc")
    voice = tmp_path / "sounds" / "it_IT_m_Carlo"
    (voice / "digits" / "1.g722").write_bytes((voice / "agent-pass.g722").read_bytes())  # same audio again
    write_g722(voice / "vm-changeto.g722", tone(0.6, seed=30))  # too short
    out = tmp_path / "out"
    summary = ml.build_multilingual(out, ("cs", "it"), per_language=0)
    assert summary["utterances"] == 3 and summary["languages"]["it"]["utterances"] == 1
    assert summary["languages"]["cs"] == {
        "utterances": 2, "seconds": 3.0, "speakers": 2, "package": "fillets-ng-data-cs",
        "licence": ml.FILLETS_LICENCE,
    }  # fmt: skip
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert (out / "metadata.jsonl").read_text(encoding="utf-8") == (out / "manifest.jsonl").read_text("utf-8")
    assert sorted(r["text"] for r in rows if r["language"] == "cs") == [
        '"Němý" svědek',
        "Co je to za divnou loď?",
    ]
    it = next(r for r in rows if r["language"] == "it")
    assert it["package"] == "asterisk-core-sounds-it-g722" and it["audio_filepath"] == "it/it-0000.flac"
    assert sf.info(out / "it" / "it-0000.flac").samplerate == 16000
    for spec in (out, out / "manifest.jsonl"):  # the folder is an audiofolder that keeps the language
        assert sorted((u.language, u.id) for u in load_spec(spec)) == [
            ("cs", "cs-0000"),
            ("cs", "cs-0001"),
            ("it", "it-0000"),
        ]
    again = ml.build_multilingual(tmp_path / "again", ("cs",), per_language=1)
    first = json.loads((tmp_path / "again" / "manifest.jsonl").read_text(encoding="utf-8"))
    assert again["utterances"] == 1 and first["text"] in {r["text"] for r in rows}


def test_a_language_without_its_packages_names_them(tmp_path, monkeypatch):
    monkeypatch.setattr(ml, "FILLETS", tmp_path / "none")
    monkeypatch.setattr(ml, "ASTERISK_SOUNDS", tmp_path / "none")
    names = "fillets-ng-data fillets-ng-data-nl asterisk-core-sounds-ru asterisk-core-sounds-ru-g722"
    with pytest.raises(DataError, match=rf"no recordings found for nl, ru \(install: {names}\)"):
        ml.build_multilingual(tmp_path / "out", ("nl", "ru"))


def test_cli_languages_flag(tmp_path, capsys, monkeypatch):
    assert data_cli.REAL_LANGUAGES == ml.LANGUAGES
    assert set(data_cli.REAL_LANGUAGES + data_cli.OTHER_LANGUAGES) == set(ml.LANGUAGES) | set(ml.ASTERISK)
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "real", str(tmp_path / "out"), "--languages", "cs,xx"])
    assert e.value.code == 2 and "xx not one of cs, nl, es, fr, it, ru" in capsys.readouterr().err
    monkeypatch.setattr(ml, "FILLETS", fake_fillets(tmp_path / "fillets"))
    monkeypatch.setattr(requirements, "missing", lambda purpose: [])  # the Debian packages: faked above
    assert cli.main(["data", "real", str(tmp_path / "out"), "--languages", "cs", "--per-language", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["languages"]["cs"]["utterances"] == 1
    assert json.loads((tmp_path / "out" / "manifest.jsonl").read_text(encoding="utf-8"))["language"] == "cs"


def test_an_unreadable_g722_file_is_a_bad_sample_naming_it(tmp_path):
    (tmp_path / "empty.g722").write_bytes(b"")
    with pytest.raises(BadSampleError, match=r"empty\.g722.*no G\.722 frames"):
        ml.read_g722(tmp_path / "empty.g722")


def test_the_multilingual_purpose_needs_every_languages_packages(monkeypatch):
    """Every language of the test split, and English (Asterisk's prompts, a training voice)."""
    monkeypatch.setattr(requirements.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(requirements.shutil, "which", lambda cmd: None)
    need = [p.debian for p in requirements.missing("multilingual")]
    assert sorted(need) == sorted(ml.packages_for([*ml.LANGUAGES, "en"]).split())
    assert not set(need) & {p.debian for p in requirements.missing("test")}  # CI does not install them
