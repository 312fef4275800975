"""Real recordings: discovery in a Sphinx tree and the alsa prompts, sdist unpacking, the test split."""

from __future__ import annotations

import io
import tarfile

import pytest
import soundfile as sf

from geodistill.corpus import demo_corpus, recordings
from geodistill.data import load_spec

from ..data.conftest import tone


def _fake_sphinx_root(root):
    (root / "cards").mkdir(parents=True)
    for k in (1, 2):
        sf.write(root / "cards" / f"00{k}.wav", tone(1.2, 16000), 16000)
    (root / "cards" / "cards.transcription").write_text(
        "<s> ten of clubs  </s> (001)\n<s> four queen of clubs </s> (002)\n<s> gone </s> (003)\n"
    )
    (root / "goforward.raw").write_bytes((tone(1.5) * 20000).astype("<i2").tobytes())
    return root


def test_real_sources_from_a_sphinx_tree(tmp_path, monkeypatch):
    monkeypatch.setattr(recordings, "ALSA_SOUNDS", tmp_path / "no-alsa")
    sources = recordings.real_sources([_fake_sphinx_root(tmp_path / "ps")])
    assert [(s.speaker, [c.text for c in s.clips]) for s in sources] == [
        ("9003", ["ten of clubs", "four queen of clubs"]),  # 003.wav does not exist: not listed
        ("9004", ["go forward ten meters"]),
    ]
    assert sources[1].clips[0].raw
    rows = demo_corpus.build_test(tmp_path / "out", sources)
    assert [(r["speaker"], r["utterances"]) for r in rows] == [("9003", 2), ("9004", 1)]
    utts = load_spec(tmp_path / "out" / "test")
    assert [(u.id, u.text) for u in utts] == [
        ("9003-1-0000", "ten of clubs"),
        ("9003-1-0001", "four queen of clubs"),
        ("9004-1-0000", "go forward ten meters"),
    ]
    assert utts[2].duration == pytest.approx(1.5)


def test_alsa_prompts_leave_out_noise(alsa_wav):
    alsa = recordings.real_sources([])[0]
    assert alsa.speaker == "9001" and len(alsa.clips) == 8
    assert "front center" in [c.text for c in alsa.clips] and all("noise" not in c.text for c in alsa.clips)


def test_sdist_tarball_is_unpacked_to_its_test_data(tmp_path):
    tarball = tmp_path / "cache" / "pypi" / "pocketsphinx-9.9.tar.gz"
    tarball.parent.mkdir(parents=True)
    buf = io.BytesIO()
    sf.write(buf, tone(1.0), 16000, format="WAV")
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in [
            ("pocketsphinx-9.9/test/data/forever/input_2_16k.wav", buf.getvalue()),
            ("pocketsphinx-9.9/test/data/model.dic", b"words"),
            ("pocketsphinx-9.9/src/main.c", b"int main;"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    data, note = recordings.fetch_sdist(tmp_path / "cache")  # the cached archive: no download
    assert data == tmp_path / "cache" / "sdist" / "pocketsphinx-9.9" / "test" / "data"
    assert note == "pocketsphinx-9.9.tar.gz (PyPI)"
    assert (data / "forever" / "input_2_16k.wav").is_file() and not (data / "model.dic").exists()
    assert not (data.parent.parent / "src").exists()
    forever = [s for s in recordings.real_sources([data]) if s.speaker == "9006"]
    assert [c.text for c in forever[0].clips] == ["feels like these days go on forever"]
