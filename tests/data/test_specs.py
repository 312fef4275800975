"""The same clips read through every spec kind give the same utterances and the same samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geodistill.data import BadSamples, load_audio, load_spec, parse_spec
from geodistill.errors import DataError

from .conftest import (
    CLIPS,
    Clip,
    manifest_rows,
    write_clip,
    write_csv,
    write_hf,
    write_jsonl,
    write_librispeech,
)


def _key(utts):
    return [(u.id, u.text, u.speaker, round(u.duration, 3)) for u in sorted(utts, key=lambda u: u.id)]


def _all_kinds(tmp_path):
    rows = manifest_rows(tmp_path / "m" / "wavs")
    manifest_rows(tmp_path / "af")  # audiofolder: clips beside metadata.jsonl, named by file_name
    meta = [
        {"file_name": c.name, "transcription": c.text, "speaker_id": c.speaker, "id": c.uid} for c in CLIPS
    ]
    write_jsonl(tmp_path / "af" / "metadata.jsonl", meta)
    return {
        "librispeech": write_librispeech(tmp_path / "ls"),
        "jsonl": write_jsonl(tmp_path / "m" / "train.jsonl", rows),
        "csv": write_csv(tmp_path / "m" / "train.csv", rows),
        "hf": write_hf(tmp_path / "hf"),
        "audiofolder": tmp_path / "af",
    }


def test_every_kind_gives_the_same_utterances_and_audio(tmp_path):
    specs = _all_kinds(tmp_path)
    kinds = {name: parse_spec(path)[0] for name, path in specs.items()}
    assert kinds == {
        "librispeech": "librispeech",
        "jsonl": "manifest",
        "csv": "manifest",
        "hf": "hf",
        "audiofolder": "audiofolder",
    }
    loaded = {name: load_spec(path) for name, path in specs.items()}
    expected = sorted((c.uid, c.text, c.speaker, round(c.seconds, 3)) for c in CLIPS)
    for name, utts in loaded.items():
        assert _key(utts) == expected, name
    reference = {u.id: load_audio(u) for u in loaded["librispeech"]}
    for name, utts in loaded.items():
        for u in utts:
            audio = load_audio(u)
            assert audio.dtype == np.float32 and audio.ndim == 1, name
            np.testing.assert_allclose(audio, reference[u.id], atol=1e-4, err_msg=f"{name} {u.id}")
    assert loaded["hf"][0].audio.startswith("hf://") and loaded["jsonl"][0].language == "en"


def test_explicit_kind_prefix_and_relative_paths(tmp_path):
    rows = manifest_rows(tmp_path / "data" / "clips")
    path = write_jsonl(tmp_path / "data" / "list.txt.jsonl", rows)
    utts = load_spec(f"manifest:{path}")
    assert [u.audio for u in utts] == [str(tmp_path / "data" / "clips" / c.name) for c in CLIPS]
    ls = write_librispeech(tmp_path / "ls")
    assert _key(load_spec(f"librispeech:{ls}")) == _key(load_spec(ls))


def test_manifest_offset_and_duration_cut_segments(tmp_path):
    long = Clip("20-1-0000", "20", "x", 6.0, 16000, 1, "wav")
    write_clip(tmp_path / "long.wav", long)
    rows = [
        {"audio_filepath": "long.wav", "text": "first part", "duration": 2.0},
        {"audio_filepath": "long.wav", "text": "second part", "offset": 3.0, "duration": 2.5},
        {"audio_filepath": "long.wav", "text": "the rest", "offset": 4.0},
    ]
    utts = load_spec(write_jsonl(tmp_path / "seg.jsonl", rows))
    assert [(u.id, u.offset, u.duration) for u in utts] == [
        ("long", 0.0, 2.0),
        ("long-3.00", 3.0, 2.5),
        ("long-4.00", 4.0, 2.0),
    ]
    full = load_audio(tmp_path / "long.wav")
    assert full.size == 6 * 16000
    np.testing.assert_array_equal(load_audio(utts[1]), full[48000:88000])
    np.testing.assert_array_equal(load_audio(utts[2]), full[64000:])


def test_manifest_segment_past_end_is_bad(tmp_path):
    write_clip(tmp_path / "a.wav", Clip("a", "a", "x", 2.0, 16000, 1, "wav"))
    bad = BadSamples()
    rows = [{"audio_filepath": "a.wav", "text": "late", "offset": 1.5, "duration": 1.0}]
    assert load_spec(write_jsonl(tmp_path / "m.jsonl", rows), bad=bad) == []
    assert "past the end of the file" in bad.items[0]["reason"]


def test_hf_text_column_variants_and_dataset_dict(tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is the optional extra geodistill[hf]")

    folder = write_hf(tmp_path / "hf", text_column="sentence")
    assert [u.text for u in load_spec(folder)] == [c.text for c in CLIPS]
    dd = datasets.DatasetDict(
        {"train": datasets.load_from_disk(str(folder)), "test": datasets.load_from_disk(str(folder))}
    )
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="several splits"):
        load_spec(tmp_path / "dd")
    assert len(load_spec(tmp_path / "dd" / "test")) == len(CLIPS)


def test_unknown_and_missing_specs_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="data spec not found"):
        load_spec(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no \*\.trans\.txt"):
        load_spec(tmp_path / "empty")
    (tmp_path / "x.yaml").write_text("a: 1")
    with pytest.raises(DataError, match="not a manifest"):
        load_spec(tmp_path / "x.yaml")


def test_duration_window_filters_and_reports(tmp_path):
    ls = write_librispeech(tmp_path / "ls")
    bad = BadSamples(tmp_path / "bad.jsonl")
    utts = load_spec(ls, bad=bad, min_duration=1.4, max_duration=2.2)
    assert sorted(u.id for u in utts) == ["11-1-0000", "11-1-0001"]
    lines = [json.loads(x) for x in (tmp_path / "bad.jsonl").read_text().splitlines()]
    reasons = {line["item"].rsplit("/", 1)[1]: line["reason"] for line in lines}
    assert reasons == {
        "12-3-0000.ogg": "too short (1.25 s < min_duration 1.4 s)",
        "13-2-0000.flac": "too long (2.50 s > max_duration 2.2 s)",
    }
    assert bad.count == 2


def test_json_array_tsv_and_same_named_files_in_two_folders(tmp_path):
    for folder in ("a", "b"):
        write_clip(tmp_path / folder / "001.wav", Clip("x", "x", "x", 1.5, 16000, 1, "wav"))
    rows = [{"audio_filepath": str(tmp_path / f / "001.wav"), "text": f"from {f}"} for f in ("a", "b")]
    (tmp_path / "list" / "m.json").parent.mkdir()
    (tmp_path / "list" / "m.json").write_text(json.dumps(rows))
    utts = load_spec(tmp_path / "list" / "m.json")
    assert [u.text for u in utts] == ["from a", "from b"]
    assert utts[0].id == "001" and utts[1].id.endswith("b-001") and utts[1].id != utts[0].id
    (tmp_path / "m.tsv").write_text("file_name\tsentence\tduration\na/001.wav\thello there\t1.2\n")
    (tsv,) = load_spec(tmp_path / "m.tsv")
    assert (tsv.id, tsv.text, tsv.duration) == ("a-001", "hello there", 1.2)
