import json

import pytest

from geodistill.evaluate.pseudo import pseudo_label
from tests.conftest import make_tiny_whisper
from tests.evaluate.clips import write_clips, write_manifest


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def teacher(tiny_processor):
    return make_tiny_whisper(d_model=32, layers=1), tiny_processor


def test_threshold_drops_what_the_teacher_gets_wrong(teacher, tmp_path):
    rows = write_clips(tmp_path, 4)
    # clip 0's reference is what the teacher says (teacher WER 0); clip 3 has no ground truth (always kept)
    first = tmp_path / "first.jsonl"
    write_manifest(tmp_path, rows[:1], first.name)
    pseudo_label(teacher, str(first), tmp_path / "probe.jsonl", max_new_tokens=4)
    rows[0]["text"] = read_jsonl(tmp_path / "probe.jsonl")[0]["text"]
    rows[3]["text"] = ""
    (tmp_path / "gone.wav").write_bytes(b"RIFF" + b"\x00" * 100)
    rows.append({"audio_filepath": "gone.wav", "text": "lost", "duration": 1.5})
    manifest = write_manifest(tmp_path, rows)

    out = tmp_path / "labels" / "pseudo.jsonl"
    summary = pseudo_label(teacher, str(manifest), out, wer_threshold=0.5, max_new_tokens=4)
    assert summary["n_in"] == 5 and summary["n_skipped"] == 1
    assert summary["n_written"] == 2 and summary["n_dropped"] == 2
    written = read_jsonl(out)
    assert [w["id"] for w in written] == ["clip0", "clip3"]
    assert written[0]["teacher_wer"] == 0.0 and written[0]["reference"] == rows[0]["text"]
    assert "reference" not in written[1] and "teacher_wer" not in written[1]
    for w in written:
        assert w["audio_filepath"].startswith("/") and w["audio_filepath"].endswith(f"{w['id']}.wav")
        assert w["text"] and w["duration"] > 1.0 and w["offset"] == 0.0
    assert "gone.wav" in (out.parent / "pseudo.bad.jsonl").read_text()
    # the teacher's corpus WER covers the three clips with ground truth, before dropping
    assert 0 < summary["wer"]


def test_no_threshold_keeps_everything_and_the_manifest_reads_back(teacher, tmp_path):
    from geodistill.data import load_spec

    manifest = write_manifest(tmp_path, write_clips(tmp_path, 3))
    out = tmp_path / "pseudo.jsonl"
    summary = pseudo_label(teacher, str(manifest), out, max_new_tokens=3)
    assert summary["n_written"] == 3 and summary["n_dropped"] == 0 and summary["n_skipped"] == 0
    back = load_spec(str(out))
    assert [u.text for u in back] == [w["text"] for w in read_jsonl(out)]
    assert all(w["teacher_wer"] >= 0 for w in read_jsonl(out))


def test_negative_threshold_is_refused(teacher, tmp_path):
    with pytest.raises(ValueError, match="wer_threshold"):
        pseudo_label(teacher, str(tmp_path / "none.jsonl"), tmp_path / "o.jsonl", wer_threshold=-1)


def test_empty_teacher_transcripts_are_not_written(teacher, tmp_path, monkeypatch):
    import geodistill.students.seq2seq.decode as run

    real = run.generate_ids

    def silent_second(model, feats, *args, **kwargs):  # the teacher "hears nothing" in the second clip
        ids = real(model, feats, *args, **kwargs).clone()
        ids[1] = model.generation_config.eos_token_id
        return ids

    monkeypatch.setattr(run, "generate_ids", silent_second)
    rows = write_clips(tmp_path, 3)
    rows[1]["text"] = ""
    summary = pseudo_label(
        teacher, str(write_manifest(tmp_path, rows)), tmp_path / "p.jsonl", max_new_tokens=3
    )
    assert summary["n_written"] == 2 and summary["n_dropped"] == 1
    assert [w["id"] for w in read_jsonl(tmp_path / "p.jsonl")] == ["clip0", "clip2"]


def test_an_interrupted_run_resumes_keeping_finished_parts(teacher, tmp_path, monkeypatch):
    import geodistill.students.seq2seq.decode as run

    manifest = write_manifest(tmp_path, write_clips(tmp_path, 5))
    args = {"batch_size": 1, "max_new_tokens": 3, "part_size": 2}
    clean = pseudo_label(teacher, str(manifest), tmp_path / "clean.jsonl", **args)
    real, calls, armed = run.generate_ids, [], [True]

    def crash_in_second_part(*args, **kwargs):  # parts of 2 clips, batches of 1: call 3 is part 1
        calls.append(1)
        if armed[0] and len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "generate_ids", crash_in_second_part)
    out = tmp_path / "resumed.jsonl"
    with pytest.raises(RuntimeError, match="simulated"):
        pseudo_label(teacher, str(manifest), out, **args)
    parts = tmp_path / "resumed.jsonl.parts"
    assert [p.name for p in sorted(parts.iterdir())] == ["part-00000.jsonl"] and not out.exists()
    calls.clear()
    armed[0] = False
    summary = pseudo_label(teacher, str(manifest), out, **args)
    assert len(calls) == 3  # clips 2, 3 and 4: part 0 was kept
    assert not parts.exists() and summary == clean
    assert read_jsonl(out) == read_jsonl(tmp_path / "clean.jsonl")
