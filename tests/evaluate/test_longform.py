"""Audio over 30 s (sequential long-form decoding), temperature fallback, token-cap count, warm-up."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from geodistill.cli import main
from geodistill.data import Utterance, load_audio
from geodistill.decoding.whisper import features, generate_ids
from geodistill.evaluate.run import evaluate
from geodistill.evaluate.transcribe import transcribe_files
from tests.evaluate.test_integration import librivox_rows


def _clips(tmp_path: Path) -> list[Utterance]:
    sf.write(tmp_path / "long.wav", 0.05 * np.ones(31 * 16000, dtype=np.float32), 16000)
    sf.write(tmp_path / "short.wav", 0.1 * np.ones(16000, dtype=np.float32), 16000)
    return [
        Utterance("long", str(tmp_path / "long.wav"), "a"),
        Utterance("short", str(tmp_path / "short.wav"), "b"),
    ]


def test_long_clip_is_decoded_with_long_form_and_caps_are_counted(tiny_whisper, tiny_processor, tmp_path):
    r = evaluate(
        (tiny_whisper, tiny_processor), _clips(tmp_path), long_form=True, max_new_tokens=2, warmup=True
    )
    assert r["n_utterances"] == 2 and r["n_skipped"] == 0 and r["long_clips"] == 1
    assert r["audio_seconds"] == pytest.approx(32.0)
    assert r["hit_token_cap"] == 1  # the random model never says <|endoftext|>: its short clip hits the cap
    assert r["warmup"]["utterances"] == 2 and r["warmup"]["seconds"] > 0
    assert r["long_form"] is True and r["temperature_fallback"] is False


def test_without_warmup_none_is_recorded(tiny_whisper, tiny_processor, tmp_path):
    r = evaluate((tiny_whisper, tiny_processor), _clips(tmp_path)[1:], max_new_tokens=2, out=tmp_path / "o")
    saved = json.loads((tmp_path / "o" / "eval.json").read_text())
    assert saved["warmup"] is None and saved["long_clips"] == 0 and r["hit_token_cap"] == 1


def test_fallback_decoding_stays_within_the_cap(tiny_whisper, tiny_processor):
    rng = np.random.default_rng(0)
    feats = features(tiny_processor, [0.1 * rng.standard_normal(16000).astype(np.float32)])
    ids = generate_ids(tiny_whisper, feats, max_new_tokens=6, fallback=True)
    assert ids.shape[0] == 1 and 0 < ids.shape[1] <= 6


def _long_recording(tmp_path: Path) -> tuple[Path, str]:
    """Five real LibriVox clips twice over with 0.5 s pauses (about 54 s), and the joined transcript."""
    rows = librivox_rows(5) * 2
    parts = []
    for row in rows:
        parts += [load_audio(row["audio_filepath"]), np.zeros(8000, np.float32)]
    path = tmp_path / "long.wav"
    sf.write(path, np.concatenate(parts), 16000)
    return path, " ".join(r["text"] for r in rows)


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["hf", "ct2"])
def test_a_54_s_real_recording_is_transcribed_whole(tmp_path, engine):
    if engine == "ct2":
        pytest.importorskip("faster_whisper")
    path, text = _long_recording(tmp_path)
    manifest = tmp_path / "long.jsonl"
    manifest.write_text(json.dumps({"audio_filepath": str(path), "text": text}) + "\n")
    r = evaluate("tiny.en", str(manifest), device="cpu", long_form=True, engine=engine)
    assert r["n_utterances"] == 1 and r["long_clips"] == 1 and r["audio_seconds"] > 50
    assert r["wer"] < 0.1  # both halves transcribed: a 30 s cut would lose about half the words


@pytest.mark.integration
def test_transcribe_cli_handles_long_audio_and_fallback_keeps_clean_speech(tmp_path, capsys):
    path, _ = _long_recording(tmp_path)
    assert main(["transcribe", "tiny.en", str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.lower()
    assert out.count("dashwood") == 2 and out.count("amiable himself") == 2
    clips = [r["audio_filepath"] for r in librivox_rows(3)]
    plain = transcribe_files("tiny.en", clips, device="cpu")
    assert transcribe_files("tiny.en", clips, device="cpu", fallback=True) == plain


@pytest.mark.integration
def test_a_dynamic_context_student_transcribes_long_audio_whole(tmp_path, capsys):
    # A student saved with dynamic audio context: over 30 s, long-form decoding takes 30-s windows as usual.
    from geodistill.models import load_whisper
    from geodistill.models.context import AudioContext, set_audio_context

    model, processor = load_whisper("tiny.en")
    set_audio_context(model, AudioContext("dynamic", 64))
    model.save_pretrained(tmp_path / "student")
    processor.save_pretrained(tmp_path / "student")
    path, _ = _long_recording(tmp_path)
    assert main(["transcribe", str(tmp_path / "student"), str(path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out.lower()
    assert out.count("dashwood") == 2 and out.count("amiable himself") == 2
