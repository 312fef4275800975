"""``transcribe --output-format/--output-dir/--word-timestamps``: every format parsed back by a real parser
(srt, webvtt-py, a JSON Schema, csv), times monotone and within the audio; bad requests are one line."""

from __future__ import annotations

import csv
import json
import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from geodistill.cli import main
from geodistill.decoding.segments import Segment, Word, boundary_distance, tidy, time_agreement, transcript
from geodistill.evaluate.outputs import FORMATS, JSON_SCHEMA, parse_formats, render

srt = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")
jsonschema = pytest.importorskip("jsonschema")


def _times(fmt: str, text: str) -> list[tuple[float, float]]:
    """(start, end) of each cue or row, read back by the format's own parser."""
    if fmt == "srt":
        return [(c.start.total_seconds(), c.end.total_seconds()) for c in srt.parse(text)]
    if fmt == "vtt":
        return [(_vtt_seconds(c.start_time), _vtt_seconds(c.end_time)) for c in webvtt.from_string(text)]
    if fmt == "tsv":
        rows = list(csv.DictReader(text.splitlines(), delimiter="\t"))
        return [(int(r["start"]) / 1000, int(r["end"]) / 1000) for r in rows]
    data = json.loads(text)
    jsonschema.validate(data, JSON_SCHEMA)
    return [(s["start"], s["end"]) for s in data["segments"]]


def _vtt_seconds(t) -> float:
    return t.hours * 3600 + t.minutes * 60 + t.seconds + t.milliseconds / 1000


def _check_times(times: list[tuple[float, float]], duration: float) -> None:
    assert times, "no segments"
    for (s0, e0), (s1, e1) in zip(times, times[1:], strict=False):
        assert s0 <= s1 and e0 <= e1  # monotone
    assert all(0 <= s <= e <= duration + 1e-3 for s, e in times)


def test_formats_parse_comma_separated_repeated_and_all():
    assert parse_formats(["srt,json", "vtt"]) == ("json", "srt", "vtt")
    assert parse_formats(["all"]) == FORMATS
    assert parse_formats(None) == ()


def test_written_times_read_back_exactly():
    t = transcript(
        [Segment(0.5, 1.25, " Hello there."), Segment(1.25, 3661.007, "General Kenobi.")], 3700.0, "en"
    )
    expected = [0.5, 1.25, 1.25, 3661.007]
    for fmt in ("srt", "vtt", "tsv", "json"):
        found = [x for pair in _times(fmt, render(fmt, t, "m", "hf", "a.wav")) for x in pair]
        assert found == pytest.approx(expected, abs=1e-6), fmt
    cues = list(srt.parse(render("srt", t, "m", "hf", "a.wav")))
    assert [c.content for c in cues] == ["Hello there.", "General Kenobi."]
    assert cues[1].end == timedelta(hours=1, minutes=1, seconds=1, milliseconds=7)
    assert [c.text for c in webvtt.from_string(render("vtt", t, "m", "hf", "a.wav"))] == [
        c.content for c in cues
    ]
    assert render("txt", t, "m", "hf", "a.wav") == "Hello there. General Kenobi.\n"


def test_tidy_clamps_into_the_audio_and_keeps_time_going_forward():
    segs = [
        Segment(-1.0, 2.0, "a", (Word(-0.5, 0.4, " a"), Word(0.3, 9.0, " b"))),
        Segment(1.0, 0.5, "b"),  # starts before the previous one and ends before it starts
        Segment(2.5, 2.6, "   "),  # empty: dropped
        Segment(40.0, 45.0, "c"),  # past the end of a 3-s clip
    ]
    out = tidy(segs, 3.0)
    assert [s.text for s in out] == ["a", "b", "c"]
    assert [(s.start, s.end) for s in out] == [(0.0, 2.0), (1.0, 1.0), (3.0, 3.0)]
    assert [(w.start, w.end) for w in out[0].words] == [(0.0, 0.4), (0.3, 2.0)]


@pytest.fixture
def two_files(tmp_path) -> tuple[Path, Path]:
    """A 1.5-s clip and a 31-s one (long-form decoding), noise."""
    rng = np.random.default_rng(0)
    short, long = tmp_path / "short.wav", tmp_path / "long.wav"
    sf.write(short, (0.1 * rng.standard_normal(24000)).astype(np.float32), 16000)
    sf.write(long, (0.1 * rng.standard_normal(31 * 16000)).astype(np.float32), 16000)
    return short, long


def test_every_format_is_written_per_file_and_parses_back(tiny_model_dir, two_files, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["transcribe", str(tiny_model_dir), *map(str, two_files), "--output-dir", str(out)]
    assert main([*argv, "--device", "cpu", "--no-fallback", "-f", "all"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in printed] == [str(p) for p in two_files]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{p.stem}.{f}" for p in two_files for f in FORMATS
    )
    for path, seconds in zip(two_files, (1.5, 31.0), strict=True):
        for fmt in ("srt", "vtt", "tsv", "json"):
            _check_times(_times(fmt, (out / f"{path.stem}.{fmt}").read_text()), seconds)
        data = json.loads((out / f"{path.stem}.json").read_text())
        assert data["model"] == str(tiny_model_dir) and data["engine"] == "hf" and data["language"] == "en"
        assert data["duration"] == pytest.approx(seconds) and data["audio"] == str(path)
        assert data["text"] == (out / f"{path.stem}.txt").read_text().strip()
        assert "words" not in data["segments"][0]  # not asked for


def test_one_format_without_a_folder_is_printed(tiny_model_dir, two_files, capsys):
    argv = ["transcribe", str(tiny_model_dir), str(two_files[0]), "--device", "cpu", "--no-fallback"]
    assert main([*argv, "--output-format", "srt"]) == 0
    _check_times(_times("srt", capsys.readouterr().out), 1.5)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-f", "srt,json"], "several formats need --output-dir"),
        (["-f", "docx"], "--output-format: unknown format 'docx'"),
        (["-f", "json", "SECOND"], "printing it takes one audio file"),
        (["-o", "OUT", "SAME"], "would both be written as"),
        (["--word-timestamps"], "has no usable alignment heads"),
        (["--word-timestamps", "--engine", "onnx"], "--engine onnx gives no token timestamps"),
    ],
)
def test_bad_output_requests_are_one_line(tiny_model_dir, two_files, tmp_path, capsys, extra, message):
    other = tmp_path / "sub"
    other.mkdir()
    (other / "short.wav").write_bytes(two_files[0].read_bytes())
    subs = {"OUT": str(tmp_path / "o"), "SAME": str(other / "short.wav"), "SECOND": str(two_files[1])}
    files = [str(two_files[0])] + [subs[x] for x in extra if x in ("SAME", "SECOND")]
    flags = [subs.get(x, x) for x in extra if x not in ("SAME", "SECOND")]
    assert main(["transcribe", str(tiny_model_dir), *files, "--device", "cpu", *flags]) == 2
    errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_word_timestamps_follow_the_alignment_heads(tiny_whisper, tiny_processor, tmp_path):
    from geodistill.evaluate.transcribe import iter_timed

    sf.write(
        tmp_path / "a.wav", (0.1 * np.random.default_rng(1).standard_normal(32000)).astype(np.float32), 16000
    )
    tiny_whisper.generation_config.alignment_heads = [[1, 0], [1, 1]]  # what a layer copy keeps, renumbered
    [(_, t)] = iter_timed(
        (tiny_whisper, tiny_processor), [tmp_path / "a.wav"], max_new_tokens=6, word_timestamps=True
    )
    words = [w for s in t.segments for w in s.words]
    assert words and [w.text.strip() for w in words] == t.text.split()
    assert all(s.start <= w.start <= w.end <= s.end for s in t.segments for w in s.words)
    data = json.loads(render("json", t, "m", "hf", "a.wav"))
    jsonschema.validate(data, JSON_SCHEMA)
    assert all("words" in s for s in data["segments"])


def test_a_ctc_student_refuses_word_timestamps(random_ctc_dir, two_files, capsys):
    argv = ["transcribe", str(random_ctc_dir), str(two_files[0]), "--word-timestamps"]
    assert main(argv) == 2
    assert "a CTC student has no decoder cross-attention" in capsys.readouterr().err


def test_time_agreement_matches_words_by_text_and_averages_their_time_differences():
    teacher = [
        Word(0.0, 0.4, " The"),
        Word(0.4, 0.9, " cat"),
        Word(1.0, 1.5, " sat"),
        Word(1.6, 2.0, " down."),
    ]
    student = [
        Word(0.1, 0.4, " the"),
        Word(0.5, 1.2, " hat"),
        Word(1.0, 1.9, " sat"),
        Word(1.5, 2.0, " down"),
    ]
    got = time_agreement(teacher, student, lambda t: t.strip(" .").lower(), tolerance=0.2)
    # matched: the (0.1, 0.0), sat (0.0, 0.4), down (0.1, 0.0); "cat"/"hat" unmatched
    assert (got.matched, got.total) == (3, 4)
    assert got.start_error == pytest.approx(0.2 / 3) and got.end_error == pytest.approx(0.4 / 3)
    assert got.within == pytest.approx(2 / 3)
    none = time_agreement(teacher, [Word(0, 1, " dog")], str.strip)
    assert none.matched == 0 and none.total == 4 and math.isnan(none.start_error)


@pytest.mark.integration
def test_dynamic_context_segments_of_a_real_batch_are_one_decoder_pass_a_clip():
    """At dynamic context generate gets the encoder states. transformers' timestamp loop went on from a clip's
    last timestamp over the same states and, in a batch where one clip ended first, failed in its batch
    reduction (real tiny.en, 5 LibriVox clips). Each clip is now decoded in one pass, as it is alone."""
    from geodistill.evaluate.transcribe import iter_timed
    from tests.evaluate.test_integration import librivox_rows

    paths = [r["audio_filepath"] for r in librivox_rows(5)]
    opts = {"audio_context": "dynamic", "max_new_tokens": 16}
    batched = [t for _, t in iter_timed("tiny.en", paths, batch_size=5, **opts)]
    alone = [t for _, t in iter_timed("tiny.en", paths[:1], batch_size=1, **opts)]
    assert len(batched) == 5 and batched[0].text == alone[0].text
    assert "Dashwood" in batched[0].text and all(t.segments for t in batched)
    assert all(len(t.text.split()) <= 16 for t in batched)  # the token cap holds (16 tokens: <= 16 words)


def test_boundary_distance_is_the_mean_distance_to_the_nearest_other_boundary():
    teacher = [Segment(0.0, 2.0, "a b"), Segment(2.5, 6.0, "c")]
    student = [Segment(0.2, 6.4, "a b c")]  # one segment for two: 2.0 and 2.5 lie far from its ends
    assert boundary_distance(teacher, student) == pytest.approx((0.2 + 1.8 + 2.3 + 0.4) / 4)
    assert boundary_distance(teacher, teacher) == 0.0
    assert math.isnan(boundary_distance(teacher, []))
