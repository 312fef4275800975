"""Evaluation and transcription at dynamic audio context (the encoder sees the clip + a margin, not 30 s)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from geodistill.decoding.whisper import features, generate_ids
from geodistill.errors import DataError, GeodistillError
from geodistill.evaluate.run import evaluate
from geodistill.evaluate.transcribe import load_model, transcribe_files
from geodistill.models import load_whisper
from geodistill.models.context import (
    AudioContext,
    dynamic_frames,
    encode,
    get_audio_context,
    set_audio_context,
)
from tests.conftest import make_tiny_whisper

DYNAMIC = AudioContext("dynamic", 16)


def clips(*seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32) for s in seconds]


def encoder_positions(model) -> list[int]:
    """Positions of every encoder output from now on (a hook on the final layer norm)."""
    seen: list[int] = []
    model.get_encoder().layer_norm.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    return seen


def test_short_features_are_the_first_frames_of_the_30_s_features(tiny_processor):
    audios = clips(2.0, 5.03, 1.0)
    full = features(tiny_processor, audios)
    short = features(tiny_processor, audios, DYNAMIC)
    assert full.shape[-1] == 3000
    assert short.shape == (3, 80, dynamic_frames(503, 16)) and short.shape[-1] == 2 * (252 + 16)
    assert torch.equal(short, full[..., : short.shape[-1]])  # the log-Mel max normalisation is unaffected


def test_a_clip_over_30_s_at_dynamic_context_names_the_file(tiny_processor):
    with pytest.raises(GeodistillError, match=r"^long\.wav: 31\.0 s is longer than Whisper's 30 s window"):
        features(tiny_processor, clips(1.0, 31.0), DYNAMIC, ["short.wav", "long.wav"])


def test_generate_with_short_encoder_outputs(tiny_processor):
    model = make_tiny_whisper()
    seen = encoder_positions(model)
    short = features(tiny_processor, clips(2.0, 1.0), DYNAMIC)
    ids = generate_ids(model, short, max_new_tokens=5)
    assert ids.shape[0] == 2 and seen == [100 + 16]
    full = features(tiny_processor, clips(2.0, 1.0))
    stock = generate_ids(model, full, max_new_tokens=5)
    with torch.inference_mode():
        via_encode = model.generate(
            encoder_outputs=encode(model.get_encoder(), full), max_new_tokens=5, do_sample=False
        )
    assert torch.equal(stock, via_encode)  # the encoder_outputs route is generate's own at 3000 frames


def test_evaluate_at_dynamic_context_keeps_input_order(tiny_model_dir, clip_manifest, tmp_path):
    manifest, rows = clip_manifest
    model, processor, _ = load_model(str(tiny_model_dir), "cpu")
    seen = encoder_positions(model)
    out = tmp_path / "eval"
    r = evaluate((model, processor), str(manifest), out=out, batch_size=2, audio_context="dynamic",
                 context_margin=8, max_new_tokens=3)  # fmt: skip
    assert r["audio_context"] == "dynamic" and r["context_margin"] == 8 and r["n_utterances"] == 4
    # clips of 1.2..1.8 s, longest first in batches of 2: (1.8, 1.6) then (1.4, 1.2)
    assert seen == [90 + 8, 70 + 8]
    utts = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert [u["reference"] for u in utts] == [row["text"] for row in rows]
    assert "dynamic (clip + 8 encoder positions)" in (out / "eval.md").read_text()


def test_a_saved_dynamic_model_is_evaluated_at_its_context_unless_overridden(
    tiny_model_dir, tiny_processor, clip_manifest, tmp_path
):
    manifest, _ = clip_manifest
    model = make_tiny_whisper(layers=1)
    set_audio_context(model, AudioContext("dynamic", 24))
    model.save_pretrained(tmp_path / "student")
    tiny_processor.save_pretrained(tmp_path / "student")
    loaded, _ = load_whisper(str(tmp_path / "student"))
    assert (
        loaded.config.geodistill_audio_context == "dynamic" and loaded.config.geodistill_context_margin == 24
    )
    r = evaluate(str(tmp_path / "student"), str(manifest), device="cpu", max_new_tokens=2)
    assert (r["audio_context"], r["context_margin"]) == ("dynamic", 24)
    r = evaluate(
        str(tmp_path / "student"), str(manifest), device="cpu", max_new_tokens=2, audio_context="full"
    )
    assert (r["audio_context"], r["context_margin"]) == ("full", None)
    r = evaluate(str(tiny_model_dir), str(manifest), device="cpu", max_new_tokens=2)
    assert r["audio_context"] == "full"  # a stock model stores nothing: full context


def test_transcribe_files_at_dynamic_context_in_order(tiny_model_dir, tmp_path):
    paths = []
    for i, audio in enumerate(clips(1.0, 2.5, 1.5)):
        paths.append(tmp_path / f"c{i}.wav")
        sf.write(paths[-1], audio, 16000)
    model, processor, _ = load_model(str(tiny_model_dir), "cpu")
    seen = encoder_positions(model)
    one_by_one = [transcribe_files((model, processor), [p], audio_context="dynamic")[0] for p in paths]
    assert seen == [50 + 64, 125 + 64, 75 + 64]
    assert transcribe_files((model, processor), paths, batch_size=1, audio_context="dynamic") == one_by_one
    assert seen[3:] == [50 + 64, 125 + 64, 75 + 64]  # streamed in the order given (memory stays flat)


def test_transcribe_refuses_over_30_s_at_dynamic_context(tiny_model_dir, tmp_path):
    sf.write(tmp_path / "long.wav", np.zeros(31 * 16000, dtype=np.float32), 16000)
    with pytest.raises(DataError, match=r"long\.wav: 31\.0 s is longer than Whisper's 30 s window"):
        transcribe_files(str(tiny_model_dir), [tmp_path / "long.wav"], device="cpu", audio_context="dynamic")


def test_cli_flags_reach_transcribe(tiny_model_dir, tmp_path):
    sf.write(tmp_path / "a.wav", clips(1.0)[0], 16000)

    def run(*flags: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable,
            "-m",
            "geodistill.cli",
            "transcribe",
            str(tiny_model_dir),
            str(tmp_path / "a.wav"),
        ]
        return subprocess.run([*cmd, "--device", "cpu", *flags], capture_output=True, text=True, timeout=120)

    bad = run("--audio-context", "dynamic", "--context-margin", "-1")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: argument --context-margin: must be an integer >= 0, got -1 "
        "(see 'geodistill transcribe --help')"
    ]
    assert run("--audio-context", "dynamic", "--context-margin", "8").returncode == 0


def test_a_lora_wrapped_dynamic_student_decodes_at_its_context():
    """The training loop validates its PEFT-wrapped student in place: the context must survive the wrap."""
    from geodistill.models.lora import add_lora

    model = make_tiny_whisper()
    set_audio_context(model, AudioContext("dynamic", 8))
    wrapped = add_lora(model, r=4, alpha=8, dropout=0.0, targets="decoder-attn-qv")
    assert get_audio_context(wrapped) == AudioContext("dynamic", 8)
    seen = encoder_positions(wrapped)
    assert generate_ids(wrapped, torch.randn(1, 80, 200), max_new_tokens=3).shape == (1, 3)
    assert seen == [100]


class HeldForBackward:
    """Bytes of every tensor autograd saves for a backward pass while active: 0 when decoding records no
    graph. Issue 29: the dynamic-context encoder pass recorded one, and every encoder layer's activations
    stayed alive through ``generate``, 2.2x full context's peak memory at batch 8."""

    def __init__(self) -> None:
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        self.bytes += t.numel() * t.element_size()
        return t

    def __enter__(self) -> HeldForBackward:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def encoder_bytes(model) -> list[int]:
    """Bytes of every encoder output from now on, and whether any of them carries a graph (-1 then)."""
    seen: list[int] = []
    model.get_encoder().layer_norm.register_forward_hook(
        lambda m, i, o: seen.append(-1 if o.requires_grad else o.numel() * o.element_size())
    )
    return seen


def test_decoding_at_dynamic_context_holds_no_graph_and_less_than_full_context(tiny_processor):
    model = make_tiny_whisper(layers=1)
    seen = encoder_bytes(model)
    audios = clips(1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 6.0)  # batch 8, as evaluate's default
    held = {}
    for mode in ("dynamic", "full"):
        feats = features(tiny_processor, audios, AudioContext(mode, 16))
        with HeldForBackward() as h:
            generate_ids(model, feats, max_new_tokens=3, no_speech=[])  # evaluate's call: no-speech shared
            generate_ids(model, feats, max_new_tokens=3)
        held[mode] = h.bytes
    assert held == {"dynamic": 0, "full": 0}
    # the encoder states generate cross-attends to: (8, 316, 32) fp32 at dynamic, (8, 1500, 32) at full
    assert seen == [8 * 316 * 32 * 4] * 2 + [8 * 1500 * 32 * 4] * 2


def test_evaluate_at_dynamic_context_records_no_graph(tiny_model_dir, clip_manifest):
    manifest, _ = clip_manifest
    model, processor, _ = load_model(str(tiny_model_dir), "cpu")
    seen = encoder_bytes(model)
    with HeldForBackward() as held:
        evaluate((model, processor), str(manifest), batch_size=8, audio_context="dynamic", max_new_tokens=2)
    assert held.bytes == 0 and seen and min(seen) > 0
