import json

import pytest

from geodistill.errors import DataError
from geodistill.evaluate.run import evaluate
from geodistill.evaluate.transcribe import load_model

REQUIRED = (
    "wer",
    "wer_raw",
    "cer",
    "rtf",
    "audio_seconds",
    "compute_seconds",
    "peak_memory_mb",
    "params",
    "n_utterances",
    "n_skipped",
    "model",
    "device",
    "threads",
    "batch_size",
    "beam_size",
    "tokens_per_second",
    "disk_mb",
    "date",
    "versions",
    "timing",
)


def test_evaluate_writes_consistent_outputs(tiny_model_dir, clip_manifest, tmp_path):
    manifest, rows = clip_manifest
    out = tmp_path / "eval"
    r = evaluate(str(tiny_model_dir), str(manifest), out=out, batch_size=3, device="cpu", max_new_tokens=4)

    on_disk = json.loads((out / "eval.json").read_text())
    assert set(REQUIRED) <= set(on_disk)
    assert on_disk == json.loads(json.dumps(r))
    assert r["model"] == str(tiny_model_dir) and r["device"] == "cpu" and r["batch_size"] == 3
    assert r["n_utterances"] == 4 and r["n_skipped"] == 1
    assert r["audio_seconds"] == pytest.approx(sum(row["duration"] for row in rows), abs=1e-3)
    assert r["rtf"] == pytest.approx(r["compute_seconds"] / r["audio_seconds"])
    assert r["compute_seconds"] > 0 and r["peak_memory_mb"] > 0 and r["tokens_per_second"] > 0
    assert r["params"] > 0 and r["disk_mb"] > 0 and r["versions"]["torch"]

    utts = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert [u["reference"] for u in utts] == [row["text"] for row in rows]  # the broken file is not there
    assert {"id", "reference", "hypothesis", "errors", "wer"} <= set(utts[0])
    errors = sum(
        u["errors"]["substitutions"] + u["errors"]["deletions"] + u["errors"]["insertions"] for u in utts
    )
    ref_words = sum(
        u["errors"]["substitutions"] + u["errors"]["deletions"] + u["errors"]["hits"] for u in utts
    )
    assert r["wer"] == pytest.approx(errors / ref_words)

    bad = (out / "bad_samples.jsonl").read_text().splitlines()
    assert len(bad) == 1 and "broken.wav" in bad[0]
    md = (out / "eval.md").read_text()
    assert "WER (normalised)" in md and f"{100 * r['wer']:.2f} %" in md


def test_limit_and_beam(tiny_model_dir, clip_manifest):
    manifest, _ = clip_manifest
    r = evaluate(str(tiny_model_dir), str(manifest), limit=2, beam_size=2, device="cpu", max_new_tokens=3)
    assert r["n_utterances"] == 2 and r["beam_size"] == 2


def test_loaded_model_and_utterance_list(tiny_model_dir, clip_manifest, tmp_path):
    from geodistill.data import load_spec

    manifest, rows = clip_manifest
    utts = [u for u in load_spec(str(manifest)) if "broken" not in str(u.audio)]
    model, processor, _ = load_model(str(tiny_model_dir), "cpu")
    model.train()  # as the training loop hands it over
    r = evaluate((model, processor), utts, batch_size=8, max_new_tokens=4)
    assert model.training  # put back the way it came
    assert r["n_utterances"] == len(utts) and r["n_skipped"] == 0
    assert "in memory" in r["model"]
    again = evaluate((model, processor), utts, batch_size=1, max_new_tokens=4)
    assert again["wer"] == r["wer"]  # greedy decoding is batch-independent and dropout was off


def test_strict_stops_at_the_broken_file(tiny_model_dir, clip_manifest):
    manifest, _ = clip_manifest
    with pytest.raises(DataError, match="broken.wav"):
        evaluate(str(tiny_model_dir), str(manifest), strict=True, device="cpu", max_new_tokens=2)


def test_nothing_usable_is_an_error(tiny_model_dir, tmp_path):
    (tmp_path / "a.wav").write_bytes(b"not audio" * 100)
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"audio_filepath": "a.wav", "text": "x", "duration": 2.0}) + "\n"
    )
    with pytest.raises(DataError, match="no usable utterances"):
        evaluate(str(tiny_model_dir), str(tmp_path / "m.jsonl"), device="cpu", max_new_tokens=2)


def test_clip_longer_than_the_window_is_skipped_not_truncated(tiny_whisper, tiny_processor, tmp_path):
    import numpy as np
    import soundfile as sf

    from geodistill.data import Utterance

    sf.write(tmp_path / "long.wav", np.zeros(31 * 16000, dtype=np.float32), 16000)
    sf.write(tmp_path / "short.wav", 0.1 * np.ones(16000, dtype=np.float32), 16000)
    utts = [
        Utterance("long", str(tmp_path / "long.wav"), "a"),
        Utterance("short", str(tmp_path / "short.wav"), "b"),
    ]
    r = evaluate((tiny_whisper, tiny_processor), utts, out=tmp_path / "o", max_new_tokens=2)
    assert r["n_utterances"] == 1 and r["n_skipped"] == 1
    bad = json.loads((tmp_path / "o" / "bad_samples.jsonl").read_text())
    assert bad["item"].endswith("long.wav") and "longer than Whisper's 30 s window" in bad["reason"]
