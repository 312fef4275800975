"""Issue 28 ("Hardening 2"), items 2, 3, 7, 8, 12c and 12d, reproduced the way the issue's attacker did.

Each test is named after its item. Most drive ``geodistill.cli.main`` and assert the promise: the command
works, or exits 2 with one ``error:`` line naming the file, folder or key and the reason (no traceback).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import WhisperForConditionalGeneration

import geodistill.decoding.converted as engines  # where the CT2 cache entries are made
from geodistill.ablate.variants import ablation_variants
from geodistill.config import ConfigError
from geodistill.config.load import load_config
from geodistill.data import BadSamples, load_spec
from geodistill.data.dataset import SpeechDataset
from geodistill.decoding.fallback import NO_SPEECH_THRESHOLD
from geodistill.decoding.longform import Decoding, decode_audios
from geodistill.decoding.speed import Timer
from geodistill.decoding.whisper import features, generate_ids, no_speech_probs
from geodistill.models.integrity import MANIFEST, manifest_problem
from tests.conftest import make_tiny_whisper
from tests.test_hardening_cli import (  # noqa: F401  (model_dir is a fixture)
    _copy_model,
    assert_one_line_error,
    cli,
    model_dir,
    write_wav,
)

SR = 16000
PROGRESS = ("Loading weights", "Writing model shards")  # transformers' tqdm bars, not messages


def messages(err: str) -> list[str]:
    """stderr lines that are messages (transformers' own progress bars left out)."""
    return [line for line in err.strip().splitlines() if line and not line.startswith(PROGRESS)]


def one_line_error(rc: int, err: str, *needles: str) -> str:
    """``assert_one_line_error`` for a command that loads weights first (their progress bar is not a line)."""
    return assert_one_line_error(rc, "\n".join(messages(err)), *needles)


def write_noise(path: Path, seconds: float = 30.0) -> Path:
    sf.write(path, (0.3 * np.random.default_rng(0).standard_normal(int(seconds * SR))).astype(np.float32), SR)
    return path


def write_silence(path: Path, seconds: float = 30.0) -> Path:
    sf.write(path, np.zeros(int(seconds * SR), np.float32), SR)
    return path


def real_tiny_en():
    """Skip unless the embedded tiny.en (geodistill[models]) is installed."""
    from geodistill.errors import ModelLoadError
    from geodistill.models.loading import embedded_source

    try:
        embedded_source("tiny.en")
    except ModelLoadError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def gd_cache(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "gd-cache"
    monkeypatch.setenv("GEODISTILL_CACHE", str(path))
    return path


# 2. the temperature fallback on noise, and a no-speech probability per utterance


class HearsSilence(WhisperForConditionalGeneration):
    """A tiny random Whisper that is sure a silent clip holds no speech: its full forward pass (the one
    transformers' no-speech detector runs on the features) puts all the weight on <|nocaptions|> for a clip
    whose features are constant. Its other clips are decoded as any random model decodes them."""

    def forward(self, input_features=None, **kwargs):
        out = super().forward(input_features=input_features, **kwargs)
        if input_features is not None:
            silent = input_features.flatten(1).std(dim=1) < 1e-4
            out.logits[silent, :, self.generation_config.no_timestamps_token_id - 1] = 1e4
        return out


@pytest.fixture
def hears_silence() -> HearsSilence:
    base = make_tiny_whisper(d_model=32, layers=1)
    model = HearsSilence(base.config)
    model.load_state_dict(base.state_dict())
    model.generation_config = base.generation_config
    return model.eval()


def test_item2_fallback_skipping_a_silent_clip_gives_integer_ids(hears_silence, tiny_processor):
    """transformers skips the silent clip (no speech, low log-probability) and pads its empty float tensor
    next to the other clip's ids: the batch came back as floats (50256.) and decoding it raised TypeError."""
    tone = 0.2 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR).astype(np.float32)
    audios = [tone, np.zeros(SR, np.float32)]
    ids = generate_ids(hears_silence, features(tiny_processor, audios), max_new_tokens=4, fallback=True)
    assert ids.dtype == torch.long
    assert ids[1].tolist() == [hears_silence.generation_config.eos_token_id] * ids.shape[1]  # skipped
    how = Decoding(max_new_tokens=4, fallback=True)
    decoded = decode_audios(hears_silence, tiny_processor, audios, how, Timer(), Timer())
    texts = tiny_processor.tokenizer.batch_decode([x.tolist() for x in decoded], skip_special_tokens=True)
    assert texts[0] and texts[1] == ""
    assert len(how.no_speech) == 2 and all(0 <= p <= 1 for p in how.no_speech)


def test_item2_no_speech_probability_comes_with_generate_at_no_cost(tiny_processor):
    """Without the fallback the encoder runs once: generate's ids are unchanged and the probability is the
    one a separate pass gives."""
    model = make_tiny_whisper(d_model=32, layers=1)
    rng = np.random.default_rng(1)
    feats = features(tiny_processor, [0.1 * rng.standard_normal(n).astype(np.float32) for n in (SR, SR // 2)])
    found: list = []
    with torch.inference_mode():
        ids = generate_ids(model, feats, max_new_tokens=3, no_speech=found)
        assert ids.tolist() == generate_ids(model, feats, max_new_tokens=3).tolist()
    assert found == pytest.approx(no_speech_probs(model, feats), abs=1e-6)


def test_item2_ct2_gives_the_same_no_speech_probability(model_dir, tiny_processor, gd_cache):  # noqa: F811
    pytest.importorskip("ctranslate2")
    from geodistill.decoding.engines import load_engine
    from geodistill.models import load_whisper

    hf, _ = load_whisper(str(model_dir), device="cpu")
    ct2, _, _ = load_engine(str(model_dir), "cpu", "ct2", compute_type="float32")
    rng = np.random.default_rng(2)
    feats = features(tiny_processor, [0.1 * rng.standard_normal(n).astype(np.float32) for n in (SR, SR // 2)])
    want = no_speech_probs(hf, feats)
    found: list = []
    generate_ids(ct2, feats, max_new_tokens=3, no_speech=found)
    assert found == pytest.approx(want, abs=1e-4)
    assert no_speech_probs(ct2, feats) == pytest.approx(want, abs=1e-4)


@pytest.mark.integration
def test_item2_fallback_on_noise_next_to_speech(capsys, tmp_path, alsa_wav):
    """The issue's reproduction: transcribe (fallback on by default) speech, 30 s of white noise and 30 s of
    digital silence in one batch. It crashed with TypeError; now every file gets its line, and each clip
    that is likely silence or noise gets one warning naming it."""
    real_tiny_en()
    noise, silence = write_noise(tmp_path / "noise.wav"), write_silence(tmp_path / "silence.wav")
    rc, out, err = cli(capsys, "transcribe", "tiny.en", alsa_wav, noise, silence, "--device", "cpu")
    assert rc == 0, err
    assert "Traceback" not in err
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(alsa_wav), str(noise), str(silence)]
    assert "center" in lines[0].lower()
    warned = [m for m in messages(err) if "no-speech probability" in m]
    assert len(warned) == 2 and str(noise) in warned[0] and str(silence) in warned[1], err


@pytest.mark.integration
def test_item2_evaluate_fallback_records_a_high_no_speech_probability_on_silence(capsys, tmp_path, alsa_wav):
    """``evaluate --fallback`` failed the same way; utterances.jsonl now records each clip's no-speech
    probability: high for digital silence and white noise, low for speech."""
    real_tiny_en()
    rows = [
        {"audio_filepath": str(alsa_wav), "text": "front center"},
        {"audio_filepath": str(write_noise(tmp_path / "noise.wav")), "text": "noise"},
        {"audio_filepath": str(write_silence(tmp_path / "silence.wav")), "text": "silence"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["evaluate", "--model", "tiny.en", "--data", manifest, "--device", "cpu", "--fallback"]
    rc, out, err = cli(capsys, *args, "--out", tmp_path / "ev")
    assert rc == 0, err
    scored = [json.loads(x) for x in (tmp_path / "ev" / "utterances.jsonl").read_text().splitlines()]
    prob = {u["id"]: u["no_speech_prob"] for u in scored}
    assert prob["silence"] > NO_SPEECH_THRESHOLD and prob["noise"] > NO_SPEECH_THRESHOLD
    assert prob["Front_Center"] < 0.2


# 3. NaN / inf samples are bad audio


def write_non_finite(path: Path) -> Path:
    x = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(1.5 * SR)) / SR)).astype(np.float32)
    x[100:200], x[300] = np.nan, np.inf
    sf.write(path, x, SR, subtype="FLOAT")
    return path


def test_item3_nan_audio_is_a_bad_sample_in_evaluate(capsys, model_dir, tmp_path):  # noqa: F811
    rows = [
        {"audio_filepath": str(write_wav(tmp_path / "good.wav")), "text": "a tone"},
        {"audio_filepath": str(write_non_finite(tmp_path / "nan.wav")), "text": "a tone"},
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["evaluate", "--model", model_dir, "--data", manifest, "--device", "cpu"]
    rc, out, err = cli(capsys, *args, "--out", tmp_path / "ev")
    assert rc == 0, err
    assert (json.loads(out)["n_utterances"], json.loads(out)["n_skipped"]) == (1, 1)
    logged = [json.loads(x) for x in (tmp_path / "ev" / "bad_samples.jsonl").read_text().splitlines()]
    assert len(logged) == 1 and logged[0]["item"].endswith("nan.wav")
    assert logged[0]["reason"].startswith("non-finite samples (NaN/inf)")


def test_item3_nan_audio_is_a_bad_sample_in_training(tmp_path, tiny_processor):
    """Training reads its samples through SpeechDataset: a NaN clip is skipped and logged, never a step."""
    utts = load_spec(str(_manifest(tmp_path, write_non_finite(tmp_path / "nan.wav"))))
    bad = BadSamples()
    assert SpeechDataset(utts, tiny_processor, bad)[0] is None
    assert [b["reason"].split(":")[0] for b in bad.items] == ["non-finite samples (NaN/inf)"]


def test_item3_nan_audio_is_one_line_in_transcribe(capsys, model_dir, tmp_path):  # noqa: F811
    nan = write_non_finite(tmp_path / "nan.wav")
    rc, out, err = cli(capsys, "transcribe", model_dir, nan, "--device", "cpu")
    one_line_error(rc, err, str(nan), "non-finite samples (NaN/inf)")
    assert not out


def _manifest(folder: Path, *wavs: Path) -> Path:
    path = folder / "m.jsonl"
    path.write_text("".join(json.dumps({"audio_filepath": str(w), "text": "a tone"}) + "\n" for w in wavs))
    return path


# 7. a damaged converted CTranslate2 cache entry is rebuilt


def _truncate(entry: Path) -> None:
    os.truncate(entry / "model.bin", (entry / "model.bin").stat().st_size // 2)


def _garbage(entry: Path) -> None:
    with open(entry / "model.bin", "r+b") as f:
        f.seek((entry / "model.bin").stat().st_size // 3)
        f.write(np.random.default_rng(0).bytes(4096))


def _no_config(entry: Path) -> None:
    (entry / "config.json").unlink()


def _empty(entry: Path) -> None:
    (entry / "model.bin").write_bytes(b"")


@pytest.mark.parametrize(
    "damage", [_truncate, _garbage, _no_config, _empty], ids=["truncated", "garbage", "no_config", "empty"]
)
def test_item7_damaged_ct2_cache_entry_is_rebuilt(capsys, model_dir, tmp_path, gd_cache, damage):  # noqa: F811
    pytest.importorskip("ctranslate2")
    entry = engines.ct2_folder(str(model_dir))
    assert entry.parent == gd_cache / "ct2" and manifest_problem(entry) is None
    damage(entry)
    wav = write_wav(tmp_path / "a.wav")
    rc, out, err = cli(
        capsys, "transcribe", model_dir, wav, "--engine", "ct2", "--no-fallback", "--device", "cpu"
    )
    assert rc == 0, err
    assert "Traceback" not in err and out.strip() != ""
    warned = messages(err)
    assert len(warned) == 1 and str(entry) in warned[0] and "converting it again" in warned[0], err
    assert manifest_problem(entry) is None  # rebuilt whole, and it passes its own check again
    assert sorted(p.name for p in gd_cache.joinpath("ct2").iterdir()) == [entry.name]  # nothing left aside


def test_item7_a_rebuild_that_fails_too_is_one_line(capsys, model_dir, tmp_path, gd_cache, monkeypatch):  # noqa: F811
    pytest.importorskip("ctranslate2")
    entry = engines.ct2_folder(str(model_dir))
    assert (entry / MANIFEST).is_file()
    _truncate(entry)

    def failing(hf, out, quantization="float32"):
        raise RuntimeError("simulated converter failure\nwith a second line")

    monkeypatch.setattr(engines, "convert_to_ct2", failing)
    wav = write_wav(tmp_path / "a.wav")
    rc, out, err = cli(
        capsys, "transcribe", model_dir, wav, "--engine", "ct2", "--no-fallback", "--device", "cpu"
    )
    lines = messages(err)
    assert "converting it again" in lines[0] and str(entry) in lines[0]
    assert_one_line_error(rc, "\n".join(lines[1:]), str(entry), "simulated converter failure")
    assert not out


# 8. a config.json whose vocab_size contradicts the weights


@pytest.fixture
def vocab_mismatch(model_dir, tmp_path) -> Path:  # noqa: F811
    folder = _copy_model(model_dir, tmp_path / "vocab-mismatch")
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 51865  # the weights have 51864 rows
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("case", ["export_hf", "export_ct2", "engine_ct2", "transcribe"])
def test_item8_vocab_mismatch_is_one_line(capsys, vocab_mismatch, tmp_path, gd_cache, case):
    if case != "export_hf" and case != "transcribe":
        pytest.importorskip("ctranslate2")
    wav = write_wav(tmp_path / "a.wav")
    args = {
        "export_hf": ["export", vocab_mismatch, "--format", "hf", "--out", tmp_path / "out"],
        "export_ct2": ["export", vocab_mismatch, "--format", "ct2", "--out", tmp_path / "out"],
        "engine_ct2": ["transcribe", vocab_mismatch, wav, "--engine", "ct2", "--device", "cpu"],
        "transcribe": ["transcribe", vocab_mismatch, wav, "--device", "cpu"],
    }[case]
    rc, out, err = cli(capsys, *args)
    line = one_line_error(
        rc, err, str(vocab_mismatch), "model.decoder.embed_tokens.weight", "vocab_size 51865"
    )
    assert "51864 rows" in line and "ignore_mismatched_sizes" not in line
    assert not out


# 12c. one-line configuration errors


def test_item12c_yaml_tab_error_is_one_line(capsys, tmp_path):
    path = tmp_path / "tab.yaml"
    path.write_text("train:\n\tlr: 1.0e-4\n")
    rc, _, err = cli(capsys, "train", "--config", path)
    assert_one_line_error(rc, err, str(path), "not valid YAML", "line 2 column 1", "not tabs")


def test_item12c_invalid_ablation_is_one_line(capsys, tmp_path):
    cfg = load_config(None, ["ablate.run=[nope, ce]", "ablate.seeds=0"])
    with pytest.raises(ConfigError) as caught:
        ablation_variants(cfg)
    text = str(caught.value)
    assert "\n" not in text and text.startswith("invalid ablation: ")
    assert "ablate.seeds: must be >= 1" in text and "unknown variant 'nope'" in text
    path = tmp_path / "ablate.yaml"
    path.write_text(f"run_dir: {tmp_path / 'run'}\nablate:\n  seeds: 0\n  run: [nope, ce]\n")
    rc, _, err = cli(capsys, "ablate", "--config", path)
    assert_one_line_error(rc, err, "invalid ablation: ", "unknown variant 'nope'")


# 12d. a derived id is stable: one clip, one id; its repeats are duplicates


def test_item12d_rows_without_ids_on_one_file_keep_one_clip(capsys, tmp_path):
    wav = write_wav(tmp_path / "clip.wav")
    rows = [{"audio_filepath": "clip.wav", "text": "a tone"}] * 5000
    rows += [{"audio_filepath": str(wav), "text": "a tone"}]  # the same file by its absolute path
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = BadSamples(tmp_path / "bad.jsonl")
    utts = load_spec(str(manifest), bad=bad)
    assert [u.id for u in utts] == ["clip"]
    assert bad.count == 5000
    assert {b["reason"] for b in bad.items} == {"duplicate of 'clip' (the same clip listed again)"}
    rc, out, _ = cli(capsys, "data", "scan", manifest)
    assert rc == 0 and "utterances: 1" in out


def test_item12d_derived_ids_stay_distinct_for_distinct_clips(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        write_wav(tmp_path / folder / "x.wav")
    rows = [
        {"audio_filepath": "a/x.wav", "text": "one"},
        {"audio_filepath": "b/x.wav", "text": "two"},
        {"audio_filepath": "a/x.wav", "text": "one", "offset": 0.5, "duration": 1.0},
        {"audio_filepath": "b/x.wav", "text": "two again"},
        {"audio_filepath": "b/x.wav", "text": "given", "id": "a-x"},  # a given id is taken as given
    ]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = BadSamples()
    utts = load_spec(str(manifest), bad=bad)
    assert [u.id for u in utts] == ["a-x", "b-x", "a-x-0.50"]
    assert [b["reason"] for b in bad.items] == [
        "duplicate of 'b-x' (the same clip listed again)",
        f"duplicate id 'a-x' (first used by {tmp_path / 'a' / 'x.wav'})",
    ]
