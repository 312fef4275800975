"""``--long-form chunked``: a file over 30 s decodes as fixed 30-s windows, ``--batch-size`` at a time, on hf
(transformers' chunked pipeline) and ct2 (faster-whisper's batched pipeline); what cannot do it refuses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from geodistill.cli import main
from geodistill.data import load_audio
from geodistill.decoding.chunked import count_windows, window_starts
from geodistill.decoding.longform import Decoding
from geodistill.decoding.options import DecodeOptions
from geodistill.decoding.wer import wer_scores
from geodistill.decoding.whisper import SAMPLE_RATE
from geodistill.errors import GeodistillError
from geodistill.evaluate.run import evaluate
from geodistill.students.seq2seq import FAMILY
from tests.evaluate.test_integration import librivox_rows

# the first LibriVox clip, the middle three three times over, the last: 63.4 s with 1-s pauses
ORDER = [0] + [1, 2, 3] * 3 + [4]


def test_windows_follow_the_pipelines_geometry():
    s = SAMPLE_RATE
    # transformers' chunk_iter: 30-s windows every 20 s until one reaches the end
    assert window_starts(65 * s) == [0, 20 * s, 40 * s]
    assert window_starts(70 * s) == [0, 20 * s, 40 * s]
    assert window_starts(70 * s + 1) == [0, 20 * s, 40 * s, 60 * s]
    assert window_starts(30 * s) == [0] and window_starts(31 * s) == [0, 20 * s]


def test_windows_of_several_clips_share_batches():
    clips = [np.zeros(65 * SAMPLE_RATE, np.float32), np.zeros(45 * SAMPLE_RATE, np.float32)]
    how = Decoding(batch_size=2)
    count_windows(how, clips)
    assert (how.stats["chunked_windows"], how.stats["chunked_batches"]) == (3 + 2, math.ceil(5 / 2))


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"vad": True}, "--long-form chunked: --vad already decodes long audio in batches"),
        ({"engine": "onnx"}, "--long-form chunked: --engine onnx has no batched windows"),
        ({"engine": "whispercpp"}, "--long-form chunked: --engine whispercpp has no batched windows"),
        ({"assistant": "tiny.en"}, "--long-form chunked: --assistant decodes one utterance at a time"),
        ({"word_timestamps": True}, "--word-timestamps: --long-form chunked gives segment times only"),
        ({"engine": "ct2", "fallback": True}, "--fallback: --long-form chunked on --engine ct2 decodes each"),
    ],
)
def test_what_cannot_chunk_is_refused_in_one_line(options, says):
    with pytest.raises(GeodistillError, match=says):
        FAMILY.check(DecodeOptions(long_form=True, long_form_mode="chunked", **options))


def test_chunked_on_ct2_with_the_models_own_fallback_passes_the_check():
    o = DecodeOptions(long_form=True, long_form_mode="chunked", engine="ct2", fallback=None)
    assert FAMILY.check(o).long_form_mode == "chunked"


def test_unknown_mode_and_a_ctc_student_are_refused(random_ctc_dir, tmp_path, capsys):
    with pytest.raises(GeodistillError, match="--long-form: unknown 'parallel'"):
        DecodeOptions(long_form_mode="parallel")
    clip = tmp_path / "a.wav"
    sf.write(clip, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert main(["transcribe", str(random_ctc_dir), str(clip), "--long-form", "chunked"]) == 2
    assert "--long-form chunked: a CTC student decodes each clip whole" in capsys.readouterr().err


@pytest.fixture(scope="module")
def joined(tmp_path_factory):
    """(wav, manifest, seconds): real LibriVox speech joined to about 63 s (``ORDER``)."""
    rows = librivox_rows(5)
    parts, texts = [], []
    for i in ORDER:
        parts += [load_audio(rows[i]["audio_filepath"]), np.zeros(SAMPLE_RATE, np.float32)]
        texts.append(rows[i]["text"])
    audio = np.concatenate(parts[:-1])
    folder = tmp_path_factory.mktemp("chunked")
    sf.write(folder / "joined.wav", audio, SAMPLE_RATE)
    row = {"audio_filepath": "joined.wav", "text": " ".join(texts), "duration": audio.size / SAMPLE_RATE}
    (folder / "m.jsonl").write_text(json.dumps(row) + "\n")
    return folder / "joined.wav", folder / "m.jsonl", audio.size / SAMPLE_RATE


def _spy_batches(monkeypatch, engine: str) -> list[int]:
    """A list that gets each decoded batch's number of windows, from the engine's generate."""
    seen: list[int] = []
    if engine == "hf":
        from transformers import WhisperForConditionalGeneration as cls  # noqa: PLC0415 -- spied on here

        name, key = "generate", "input_features"
    else:
        from geodistill.decoding.engines import Ct2Whisper as cls  # noqa: PLC0415 -- spied on here

        name, key = "generate", "input_features"
    real = getattr(cls, name)

    def spy(self, *args, **kwargs):
        feats = kwargs.get(key, args[0] if args else None)
        seen.append(int(feats.shape[0]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, spy)
    return seen


def test_eval_json_records_the_windows(tiny_whisper, tiny_processor, joined):
    _, manifest, _ = joined
    r = evaluate(
        (tiny_whisper, tiny_processor),
        str(manifest),
        batch_size=2,
        max_new_tokens=2,
        long_form=True,
        long_form_mode="chunked",
    )
    assert (r["chunked_windows"], r["chunked_batches"], r["long_clips"]) == (3, 2, 1)
    assert r["long_form_mode"] == "chunked" and r["n_utterances"] == 1


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["hf", "ct2"])
def test_tiny_en_decodes_a_minute_in_batched_windows(joined, tmp_path, monkeypatch, engine):
    if engine == "ct2":
        pytest.importorskip("faster_whisper")
    wav, manifest, seconds = joined
    seen = _spy_batches(monkeypatch, engine)
    out = tmp_path / "out"
    argv = ["transcribe", "tiny.en", str(wav), "--device", "cpu", "--engine", engine, "-o", str(out)]
    assert main([*argv, "--long-form", "chunked", "--batch-size", "2", "-f", "json"]) == 0
    # 63.4 s: windows start at 0, 20 and 40 s; batch 2 -> two batches
    assert seen == [2, 1], seen
    found = json.loads((out / "joined.json").read_text())
    words = found["text"].lower()
    # both ends of the audio: the first clip's words and the last one's ("even", "himself" are only there)
    assert "dashwood" in words and "prudently" in words
    assert "even have been made amiable himself" in words
    reference = json.loads(manifest.read_text())["text"]
    # a window dropped or decoded twice would cost far more than this (tiny.en: about 0.03)
    assert wer_scores([reference], [found["text"]])["wer"] < 0.15
    # the timed transcript (what -f srt writes) spans the file, in order, within the audio
    segments = found["segments"]
    assert all(0 <= s["start"] <= s["end"] <= seconds for s in segments)
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    assert segments[-1]["end"] > 60 and "himself" in segments[-1]["text"]
