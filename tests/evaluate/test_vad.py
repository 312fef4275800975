"""``--vad``: silence is not decoded (fewer 30-s windows), and times stay in the original audio's time."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from geodistill.cli import main
from geodistill.data import load_audio
from geodistill.decoding.vad import CHUNK_SAMPLES, END_SLACK_MS, SAMPLE_RATE, SPEECH_PAD_MS, Chunk, pack
from geodistill.evaluate.run import evaluate
from geodistill.evaluate.transcribe import iter_timed
from tests.evaluate.test_integration import librivox_rows

GAP = 20.0  # seconds of digital silence between the speech


def test_spans_pack_into_chunks_of_at_most_30_s():
    spans = [
        (0, 10 * SAMPLE_RATE),
        (15 * SAMPLE_RATE, 35 * SAMPLE_RATE),
        (40 * SAMPLE_RATE, 110 * SAMPLE_RATE),
    ]
    chunks = pack(spans)
    assert all(0 < c.samples <= CHUNK_SAMPLES for c in chunks)
    assert [c.samples for c in chunks] == [
        30 * SAMPLE_RATE,
        30 * SAMPLE_RATE,
        30 * SAMPLE_RATE,
        10 * SAMPLE_RATE,
    ]
    assert chunks[0].spans == ((0, 10 * SAMPLE_RATE), (15 * SAMPLE_RATE, 35 * SAMPLE_RATE))
    covered = [s for c in chunks for s in c.spans]  # every sample of speech once, in order
    assert sum(e - s for s, e in covered) == sum(e - s for s, e in spans)
    assert all(a[1] <= b[0] for a, b in zip(covered, covered[1:], strict=False))


def test_chunk_times_map_back_to_the_clip():
    chunk = Chunk(((16000, 48000), (480000, 512000)))  # 1-3 s and 30-32 s of the clip, 4 s of chunk audio
    clip = np.arange(600000, dtype=np.float32)
    assert np.array_equal(chunk.audio(clip), np.concatenate([clip[16000:48000], clip[480000:512000]]))
    assert chunk.to_original(0.0) == 1.0 and chunk.to_original(1.5) == 2.5
    assert chunk.to_original(3.0) == pytest.approx(31.0)
    pad, slack = SPEECH_PAD_MS / 1000, END_SLACK_MS / 1000
    # an end just into the second span (its leading pad, Whisper's late ends) belongs to the first span
    assert chunk.to_original(2.0 + slack * 0.9, end=True) == 3.0
    assert chunk.to_original(2.0 + slack * 0.9) == pytest.approx(30.0 + slack * 0.9)
    assert chunk.to_original(2.0 + slack * 1.1, end=True) == pytest.approx(30.0 + slack * 1.1)
    # a start in the first span's trailing pad begins the second span's speech
    assert chunk.to_original(2.0 - pad / 2) == 30.0


@pytest.fixture(scope="module")
def gap_recording(tmp_path_factory):
    """Real speech (LibriVox), 20 s of silence, real speech: about 35 s, and where the silence lies."""
    pytest.importorskip("silero_vad")
    clips = [load_audio(r["audio_filepath"]) for r in librivox_rows(3)]
    audio = np.concatenate([clips[0], np.zeros(int(GAP * SAMPLE_RATE), np.float32), clips[1], clips[2]])
    path = tmp_path_factory.mktemp("vad") / "gap.wav"
    sf.write(path, audio, SAMPLE_RATE)
    gap = (clips[0].size / SAMPLE_RATE, clips[0].size / SAMPLE_RATE + GAP)
    return path, audio.size / SAMPLE_RATE, gap


def _counting_windows(model):
    """A list that grows by one per encoder pass (a decoded window; batch items counted each)."""
    seen: list[int] = []
    model.model.encoder.register_forward_hook(
        lambda m, a, out: seen.append(int(out.last_hidden_state.shape[0]))
    )
    return seen


def test_vad_decodes_fewer_windows_in_evaluate(tiny_whisper, tiny_processor, gap_recording, tmp_path):
    path, seconds, _ = gap_recording
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(path), "text": "x", "duration": seconds}) + "\n")
    windows = {}
    for vad in (False, True):
        seen = _counting_windows(tiny_whisper)
        r = evaluate((tiny_whisper, tiny_processor), str(manifest), long_form=True, max_new_tokens=4, vad=vad)
        windows[vad] = sum(seen)
        assert r["n_utterances"] == 1
        tiny_whisper.model.encoder._forward_hooks.clear()
    # without VAD: the 35-s file is two 30-s windows of long-form decoding (+ its no-speech pass); with it,
    # its 15 s of speech are one short window
    assert windows[True] < windows[False], windows
    assert windows[True] == 1, windows


def test_vad_times_stay_in_the_recordings_time(tiny_whisper, tiny_processor, gap_recording):
    path, seconds, _ = gap_recording
    seen = _counting_windows(tiny_whisper)
    [(_, t)] = iter_timed((tiny_whisper, tiny_processor), [path], max_new_tokens=4, vad=True, fallback=False)
    assert sum(seen) == 1 and t.duration == pytest.approx(seconds)
    assert t.segments and all(0 <= s.start <= s.end <= seconds for s in t.segments)
    starts = [s.start for s in t.segments]
    assert starts == sorted(starts)


def test_vad_is_refused_for_a_ctc_student(random_ctc_dir, gap_recording, capsys):
    assert main(["transcribe", str(random_ctc_dir), str(gap_recording[0]), "--vad"]) == 2
    assert "--vad: not implemented for a CTC student" in capsys.readouterr().err


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["hf", "ct2"])
def test_tiny_en_with_vad_and_word_times_keeps_the_silence_empty(gap_recording, tmp_path, engine):
    if engine == "ct2":
        pytest.importorskip("faster_whisper")
    path, seconds, (gap_start, gap_end) = gap_recording
    out = tmp_path / "out"
    argv = ["transcribe", "tiny.en", str(path), "--device", "cpu", "--engine", engine, "-o", str(out)]
    assert main([*argv, "--vad", "--word-timestamps", "-f", "json"]) == 0
    data = json.loads((out / "gap.json").read_text())
    words = [w for s in data["segments"] for w in s["words"]]
    assert len(words) > 30 and "Dashwood" in data["text"] and data["engine"] == engine
    assert all(0 <= w["start"] <= w["end"] <= seconds for w in words)
    # nothing is said in the silence: no segment or word lies in it or stretches over it
    for item in data["segments"] + words:
        assert item["end"] <= gap_start + 0.5 or item["start"] >= gap_end - 0.5, item
