"""Every kind of bad input is skipped with its reason logged; strict mode stops at the first, naming it."""

from __future__ import annotations

import json

import pytest

from geodistill.data import BadSampleError, BadSamples, load_audio, load_spec, probe
from geodistill.data.bad import item_name
from geodistill.errors import DataError

from .conftest import CLIPS, Clip, write_clip, write_librispeech

GOOD = CLIPS[:2]  # 11-1-0000.flac, 11-1-0001.wav


def _bad_folder(root):
    """A LibriSpeech chapter with two good clips and one of every kind of bad item."""
    write_librispeech(root, GOOD)
    ch = root / "11" / "1"
    (ch / "11-1-0002.flac").write_bytes(b"")  # zero bytes
    write_clip(ch / "11-1-0003.flac", Clip("11-1-0003", "11", "x", 2.0, 16000, 1, "flac"))
    data = (ch / "11-1-0003.flac").read_bytes()
    (ch / "11-1-0003.flac").write_bytes(data[: len(data) // 2])  # truncated FLAC
    write_clip(ch / "11-1-0004.wav", Clip("11-1-0004", "11", "x", 2.0, 16000, 1, "wav"))
    data = (ch / "11-1-0004.wav").read_bytes()
    (ch / "11-1-0004.wav").write_bytes(data[: len(data) // 2])  # truncated WAV
    (ch / "11-1-0005.mp3").write_text("this is a text file, renamed")  # not audio at all
    (ch / "11-1-0006.m4a").write_bytes(b"\x00\x00\x00\x18ftypM4A " + bytes(64))  # a format soundfile lacks
    write_clip(ch / "11-1-0008.wav", Clip("11-1-0008", "11", "x", 1.0, 16000, 1, "wav"))
    write_clip(ch / "11-1-0010.flac", Clip("11-1-0010", "11", "x", 0.5, 16000, 1, "flac"))  # too short
    write_clip(ch / "11-1-0011.flac", Clip("11-1-0011", "11", "x", 31.0, 16000, 1, "flac"))  # too long
    write_clip(
        ch / "11-1-0012.flac", Clip("11-1-0012", "11", "x", 1.5, 16000, 1, "flac")
    )  # no transcript line
    lines = [f"{c.uid} {c.text}".encode() for c in GOOD] + [
        b"11-1-0002 zero bytes",
        b"11-1-0003 truncated flac",
        b"11-1-0004 truncated wav",
        b"11-1-0005 text file",
        b"11-1-0006 unsupported",
        b"11-1-0007 missing file",
        b"11-1-0008 ",
        b"11-1-0009 caf\xe9 au lait",
        b"11-1-0010 short",
        b"11-1-0011 long",
    ]
    (ch / "11-1.trans.txt").write_bytes(b"\n".join(lines) + b"\n")
    return root


EXPECTED = {  # file or line -> start of the reason
    "11-1-0002.flac": "empty file (0 bytes)",
    "11-1-0003.flac": "truncated or corrupt audio",
    "11-1-0004.wav": "truncated WAV (header promises",
    "11-1-0005.mp3": "cannot decode audio",
    "11-1-0006.m4a": "unsupported audio format '.m4a'",
    "11-1-0007.flac": "file not found",
    "11-1-0008.wav": "empty transcript",
    "11-1.trans.txt:10": "line is not valid UTF-8 (byte 0xe9 at column 14)",
    "11-1-0010.flac": "too short (0.50 s < min_duration 1 s)",
    "11-1-0011.flac": "too long (31.00 s > max_duration 30 s)",
    "11-1-0012.flac": "audio file has no line in the folder's *.trans.txt",
}


def test_each_bad_kind_is_skipped_and_logged(tmp_path):
    root = _bad_folder(tmp_path / "ls")
    bad = BadSamples(tmp_path / "run" / "bad_samples.jsonl")
    utts = load_spec(root, bad=bad)
    assert [u.id for u in utts] == [c.uid for c in GOOD]
    lines = [json.loads(x) for x in (tmp_path / "run" / "bad_samples.jsonl").read_text().splitlines()]
    got = {line["item"].rsplit("/", 1)[1]: line["reason"] for line in lines}
    assert set(got) == set(EXPECTED)
    for item, reason in EXPECTED.items():
        assert got[item].startswith(reason), (item, got[item])
    assert all(line["item"].startswith(str(root)) for line in lines)
    assert bad.count == len(EXPECTED) and bad.items == lines


@pytest.mark.parametrize(
    "name, reason", [("11-1-0002.flac", "empty file (0 bytes)"), ("11-1-0007.flac", "file not found")]
)
def test_strict_stops_at_the_first_bad_item_naming_it(tmp_path, name, reason):
    write_librispeech(tmp_path / "ls", GOOD)
    ch = tmp_path / "ls" / "11" / "1"
    if "0002" in name:
        (ch / name).write_bytes(b"")
    with open(ch / "11-1.trans.txt", "a") as f:
        f.write(f"{name.split('.')[0]} a bad one\n")
    with pytest.raises(BadSampleError) as err:
        load_spec(tmp_path / "ls", bad=BadSamples(strict=True))
    assert str(err.value) == f"{ch / name}: {reason}"
    assert isinstance(err.value, DataError) and "\n" not in str(err.value)


def test_manifest_lines_bad_json_bad_utf8_and_bad_numbers(tmp_path):
    write_clip(tmp_path / "a.wav", Clip("a", "a", "x", 1.5, 16000, 1, "wav"))
    (tmp_path / "m.jsonl").write_bytes(
        b'{"audio_filepath": "a.wav", "text": "fine"}\n'
        b"not json\n"
        b'{"audio_filepath": "a.wav", "text": "caf\xe9"}\n'
        b'{"text": "no audio"}\n'
        b'{"audio_filepath": "a.wav", "text": "x", "duration": "long"}\n'
        b"[1, 2]\n"
    )
    bad = BadSamples()
    assert [u.text for u in load_spec(tmp_path / "m.jsonl", bad=bad)] == ["fine"]
    reasons = {b["item"].rsplit(":", 1)[1]: b["reason"] for b in bad.items}
    assert set(reasons) == {"2", "3", "4", "5", "6"}
    assert reasons["2"].startswith("not valid JSON") and reasons["3"].startswith("line is not valid UTF-8")
    assert reasons["4"].startswith("no audio path") and reasons["5"].startswith(
        "offset/duration is not a number"
    )
    assert reasons["6"] == "not a JSON object"


def test_csv_row_with_bad_bytes_names_its_line(tmp_path):
    write_clip(tmp_path / "a.wav", Clip("a", "a", "x", 1.5, 16000, 1, "wav"))
    write_clip(tmp_path / "b.wav", Clip("b", "b", "x", 1.5, 16000, 1, "wav"))
    (tmp_path / "m.csv").write_bytes(b'audio_filepath,text\na.wav,"caf\xe9, two"\nb.wav,good one\n')
    bad = BadSamples()
    assert [u.id for u in load_spec(tmp_path / "m.csv", bad=bad)] == ["b"]
    assert bad.items == [{"item": f"{tmp_path / 'm.csv'}:2", "reason": "line is not valid UTF-8"}]


def test_load_audio_errors_name_the_file(tmp_path):
    root = _bad_folder(tmp_path / "ls")
    for name, reason in [
        ("11-1-0002.flac", "empty file"),
        ("11-1-0003.flac", "truncated or corrupt"),
        ("11-1-0005.mp3", "cannot decode audio"),
        ("missing.wav", "file not found"),
    ]:
        path = root / "11" / "1" / name
        with pytest.raises(BadSampleError, match=reason) as err:
            load_audio(path)
        assert str(err.value).startswith(f"{path}: ")
    with pytest.raises(BadSampleError, match="truncated WAV"):
        probe(root / "11" / "1" / "11-1-0004.wav")


def test_bad_samples_counts_what_other_processes_appended(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"item": "old", "reason": "from an earlier run"}\n')
    bad = BadSamples(path)
    assert bad.count == 0  # the earlier run's line is not ours
    bad.add("a.wav", "broken")
    with open(path, "a") as f:  # what a DataLoader worker's pickled copy writes
        f.write('{"item": "b.wav", "reason": "also broken"}\n')
    assert bad.count == 2 and [b["item"] for b in bad.items] == ["a.wav", "b.wav"]
    memory = BadSamples()
    memory.add("x", "y")
    assert memory.items == [{"item": "x", "reason": "y"}] and memory.count == 1


def test_item_name_of_an_utterance_segment(tmp_path):
    from geodistill.data import Utterance

    assert item_name(Utterance("u", "/a.wav", "t")) == "/a.wav"
    assert item_name(Utterance("u", "/a.wav", "t", offset=1.0, duration=2.5)) == "/a.wav[1.00s-3.50s]"
