"""Speaker-disjoint deterministic splits; the scan report's numbers."""

from __future__ import annotations

import pytest

from geodistill.data import Utterance, speaker_of, split_by_speaker
from geodistill.data.scan import duration_histogram, scan_report
from geodistill.errors import DataError

from .conftest import CLIPS, write_librispeech


def _utts(n_speakers=10, per=5):
    return [
        Utterance(f"{s}-1-{k:04d}", f"/x/{s}-{k}.flac", "t")
        for s in range(100, 100 + n_speakers)
        for k in range(per)
    ]


def test_split_is_speaker_disjoint_deterministic_and_sized():
    utts = _utts()
    train, val = split_by_speaker(utts, 0.2, seed=5)
    assert {speaker_of(u) for u in train}.isdisjoint({speaker_of(u) for u in val})
    assert len(train) + len(val) == len(utts) and len(val) == 10
    assert split_by_speaker(utts, 0.2, seed=5) == (train, val)
    assert train == [u for u in utts if u in train]  # input order kept
    others = {tuple(u.id for u in split_by_speaker(utts, 0.2, seed=s)[1]) for s in range(6)}
    assert len(others) > 1  # the seed picks the speakers


def test_split_uses_speaker_field_over_id_prefix():
    utts = [Utterance(f"x-{i}", "/a.wav", "t", speaker="A" if i < 3 else "B") for i in range(6)]
    train, val = split_by_speaker(utts, 0.5, seed=0)
    assert {u.speaker for u in val} in ({"A"}, {"B"}) and len(train) == 3


def test_split_edge_cases():
    utts = _utts(2, 3)
    assert split_by_speaker(utts, 0.0, seed=1) == (utts, [])
    train, val = split_by_speaker(utts, 0.9, seed=1)
    assert train and val  # never every speaker in validation
    with pytest.raises(DataError, match="from 1 speaker"):
        split_by_speaker(_utts(1, 4), 0.1, seed=0)
    with pytest.raises(DataError, match="val_fraction"):
        split_by_speaker(utts, 1.0, seed=0)


def test_scan_report_numbers_and_bad_files(tmp_path):
    root = write_librispeech(tmp_path / "ls")
    (root / "11" / "1" / "11-1-0009.flac").write_bytes(b"")
    with open(root / "11" / "1" / "11-1.trans.txt", "a") as f:
        f.write("11-1-0009 EMPTY\n")
    report = scan_report(str(root))
    total = sum(c.seconds for c in CLIPS)
    assert f"data spec: {root} (librispeech)" in report
    assert "utterances: 4\n" in report and f"hours: {total / 3600:.4f} ({total:.1f} s)" in report
    assert "speakers: 3\n" in report
    assert "      1-2 s |" in report and report.split("      1-2 s |")[1].split("\n")[0].endswith(" 2")
    assert (
        "bad or filtered items: 1" in report and f"{root}/11/1/11-1-0009.flac: empty file (0 bytes)" in report
    )
    with pytest.raises(DataError, match="11-1-0009.flac: empty file"):
        scan_report(str(root), strict=True)
    window = scan_report(str(root), min_duration=1.9, max_duration=2.2)
    assert (
        "utterances: 1\n" in window and "bad or filtered items: 4 (kept duration window 1.9-2.2 s)" in window
    )
    assert "       2  too short\n" in window and "       1  too long\n" in window


def test_scan_flags_upper_case_corpora(tmp_path):
    root = write_librispeech(tmp_path / "ls", CLIPS[:1])  # "HELLO WORLD"
    assert "all upper-case" in scan_report(str(root))
    assert "all upper-case" not in scan_report(str(write_librispeech(tmp_path / "b", CLIPS[1:2])))


def test_duration_histogram_bins():
    lines = duration_histogram([0.5, 1.5, 1.7, 12.0, 45.0])
    assert [line.split("|")[0].strip() for line in lines][:3] == ["0-1 s", "1-2 s", "2-3 s"]
    counts = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert counts == [1, 2, 0, 0, 0, 1, 0, 0, 1]
    assert lines[1].count("#") == 40 and lines[0].count("#") == 20
