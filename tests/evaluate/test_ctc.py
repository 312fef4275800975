"""`evaluate` and `transcribe` of a CTC student: greedy text of its own forward, the usual eval.json."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from geodistill.cli import main
from geodistill.data import Utterance, load_audio
from geodistill.errors import DataError, GeodistillError
from geodistill.evaluate.run import evaluate
from geodistill.evaluate.transcribe import iter_transcripts
from geodistill.students.ctc.decode import clip_features
from geodistill.students.ctc.model import ctc_greedy, encode_clips, load_ctc


def training_path_text(folder, path) -> str:
    """The greedy transcript as training sees a clip: 30-s features cut to the clip (CTCStudent.encode)."""
    model, processor = load_ctc(folder)
    audio = load_audio(path)
    feats = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        log_probs, _, lengths = encode_clips(model, feats, torch.tensor([len(audio) / 16000]))
    return ctc_greedy(log_probs, lengths, model.shape.vocab)[0]


def test_evaluate_scores_a_ctc_run_like_any_student(random_ctc_dir, clip_manifest, tmp_path):
    manifest, rows = clip_manifest
    out = tmp_path / "eval"
    r = evaluate(str(random_ctc_dir), str(manifest), out=out, batch_size=3, device="cpu", warmup=True)
    assert r == json.loads((out / "eval.json").read_text())
    model, _ = load_ctc(random_ctc_dir)
    assert r["family"] == "ctc" and r["params"] == sum(p.numel() for p in model.parameters())
    assert all(math.isfinite(r[k]) for k in ("wer", "cer", "rtf", "peak_memory_mb", "disk_mb"))
    assert r["rtf"] == pytest.approx(r["compute_seconds"] / r["audio_seconds"]) and r["rtf"] > 0
    assert r["n_utterances"] == 4 and r["n_skipped"] == 1 and r["warmup"]["utterances"] == 3
    assert r["hit_token_cap"] == 0 and "not applicable" in r["hit_token_cap_note"]
    assert r["tokens_per_second"] is None and r["engine"] == "torch" and r["audio_context"] == "clip"
    md = (out / "eval.md").read_text()
    assert "greedy CTC best path" in md and "no token cap" in md and "emits characters" in md
    utts = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert [u["reference"] for u in utts] == [row["text"] for row in rows]
    hyps = [u["hypothesis"] for u in utts]
    assert any(hyps)  # a random model emits characters: the comparison below is not about empty strings
    assert hyps == [training_path_text(random_ctc_dir, tmp_path / row["audio_filepath"]) for row in rows]
    assert "broken.wav" in (out / "bad_samples.jsonl").read_text()


def test_a_trained_run_folder_evaluates_from_a_loaded_pair_too(tiny_ctc_run, clip_manifest):
    manifest, _ = clip_manifest
    from_run = evaluate(str(tiny_ctc_run), str(manifest), device="cpu")
    model, processor = load_ctc(tiny_ctc_run / "best")
    model.train()
    pair = evaluate((model, processor), str(manifest), batch_size=1)
    assert model.training  # put back as it came
    assert (pair["wer"], pair["cer"], pair["family"]) == (from_run["wer"], from_run["cer"], "ctc")


@pytest.mark.parametrize(
    ("option", "named"),
    [
        ({"engine": "ct2"}, "--engine ct2"),
        ({"assistant": "tiny.en"}, "--assistant"),
        ({"beam_size": 2}, "--beam-size 2"),
        ({"fallback": True}, "--fallback"),
        ({"audio_context": "dynamic"}, "--audio-context dynamic"),
        ({"context_margin": 8}, "--context-margin 8"),
        ({"max_new_tokens": 4}, "max_new_tokens 4"),
    ],
)
def test_whisper_options_are_refused_by_name(random_ctc_dir, clip_manifest, tmp_path, option, named):
    manifest, _ = clip_manifest
    with pytest.raises(GeodistillError, match=f"^{named}: .*CTC student") as info:
        evaluate(str(random_ctc_dir), str(manifest), out=tmp_path / "o", device="cpu", **option)
    assert "\n" not in str(info.value) and not (tmp_path / "o").exists()  # refused before anything ran
    if "max_new_tokens" not in option:
        paths = [manifest.parent / "clip0.wav"]
        with pytest.raises(GeodistillError, match=f"^{named}: "):
            list(iter_transcripts(str(random_ctc_dir), paths, device="cpu", **option))


def test_clips_over_30_s_are_skipped_or_refused_not_decoded_long_form(random_ctc_dir, tmp_path):
    sf.write(tmp_path / "long.wav", np.zeros(31 * 16000, dtype=np.float32), 16000)
    sf.write(tmp_path / "short.wav", 0.1 * np.ones(16000, dtype=np.float32), 16000)
    utts = [Utterance(n, str(tmp_path / f"{n}.wav"), "a b") for n in ("long", "short")]
    r = evaluate(str(random_ctc_dir), utts, out=tmp_path / "o", long_form=True)  # as the CLI always asks
    assert r["n_utterances"] == 1 and r["long_form"] is False and r["long_clips"] == 0
    bad = json.loads((tmp_path / "o" / "bad_samples.jsonl").read_text())
    assert bad["item"].endswith("long.wav") and "longer than the CTC student's 30 s" in bad["reason"]
    (tmp_path / "m.jsonl").write_text(
        "".join(json.dumps({"audio_filepath": u.audio, "text": "a"}) + "\n" for u in utts)
    )
    assert evaluate(str(random_ctc_dir), str(tmp_path / "m.jsonl"), long_form=True)["n_skipped"] == 1
    with pytest.raises(DataError, match=r"long\.wav: 31\.0 s is longer than the CTC student's 30 s"):
        list(iter_transcripts(str(random_ctc_dir), [tmp_path / "long.wav"], long_form=True))


def test_transcribe_gives_the_greedy_text_of_the_models_forward(random_ctc_dir, clip_manifest, capsys):
    manifest, rows = clip_manifest
    paths = [manifest.parent / row["audio_filepath"] for row in rows]
    got = [text for _, text in iter_transcripts(str(random_ctc_dir), paths, batch_size=3, device="cpu")]
    want = [training_path_text(random_ctc_dir, p) for p in paths]
    assert got == want and all(got)
    assert (
        main(["transcribe", str(random_ctc_dir), str(paths[0]), "--device", "cpu"]) == 0
    )  # fallback default
    assert capsys.readouterr().out.strip() == want[0]
    assert main(["transcribe", str(random_ctc_dir), str(paths[0]), "--engine", "ct2"]) == 2
    assert capsys.readouterr().err.startswith("error: --engine ct2: a CTC student runs in PyTorch only")


def test_a_batch_is_cut_to_its_longest_clip_and_each_clip_keeps_its_30_s_features(tiny_processor):
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 32000, 8080)]
    feats, positions = clip_features(tiny_processor, clips)
    assert feats.shape == (3, 80, 200) and positions.tolist() == [50, 100, 26]  # 2 s longest, not 30 s
    full = tiny_processor.feature_extractor(clips, sampling_rate=16000, return_tensors="pt").input_features
    assert torch.equal(feats, full[..., :200])  # what training cuts its 30-s features to


def test_the_evaluate_command_takes_a_ctc_run(tiny_ctc_run, clip_manifest, capsys):
    manifest, _ = clip_manifest
    assert main(["evaluate", "--model", str(tiny_ctc_run), "--data", str(manifest), "--device", "cpu"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["hit_token_cap"] == 0 and printed["n_utterances"] == 4 and math.isfinite(printed["wer"])
    assert main(["evaluate", "--model", str(tiny_ctc_run), "--data", str(manifest), "--fallback"]) == 2
    assert capsys.readouterr().err.startswith("error: --fallback: ")


@pytest.mark.integration
def test_real_speech_is_resampled_and_decoded_as_training_sees_it(random_ctc_dir, alsa_wav):
    (got,) = [text for _, text in iter_transcripts(str(random_ctc_dir), [alsa_wav], device="cpu")]
    assert got and got == training_path_text(random_ctc_dir, alsa_wav)
