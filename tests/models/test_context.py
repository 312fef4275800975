"""Dynamic audio context: the short-context encoder, frame arithmetic, the stored choice, config fields."""

from __future__ import annotations

import pytest
import torch

from geodistill.config import ConfigError, load_config
from geodistill.errors import GeodistillError
from geodistill.models.context import (
    AudioContext,
    clip_frames,
    dynamic_frames,
    encode,
    get_audio_context,
    jittered_frames,
    resolve_audio_context,
    set_audio_context,
)
from tests.conftest import make_tiny_whisper


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_encode_at_3000_frames_is_the_stock_encoder_bit_for_bit(attn):
    model = make_tiny_whisper(layers=2)
    model.config._attn_implementation = attn
    enc = model.model.encoder
    feats = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        stock = enc(feats, output_hidden_states=True)
        ours = encode(enc, feats, output_hidden_states=True)
    assert torch.equal(ours.last_hidden_state, stock.last_hidden_state)
    assert len(ours.hidden_states) == len(stock.hidden_states) == 3
    assert all(torch.equal(a, b) for a, b in zip(ours.hidden_states, stock.hidden_states, strict=True))


def test_a_two_second_clip_runs_over_100_plus_margin_positions():
    enc = make_tiny_whisper().model.encoder
    frames = dynamic_frames(clip_frames(2 * 16000), margin=64)
    assert frames == 2 * (100 + 64)
    with torch.no_grad():
        out = encode(enc, torch.randn(3, 80, frames)).last_hidden_state
    assert out.shape == (3, 100 + 64, 32)
    assert out.shape[1] <= 100 + 64


def test_the_short_context_is_the_start_of_the_full_one_up_to_attention():
    """Conv and position table are local: the first positions' embeddings match; only attention differs."""
    enc = make_tiny_whisper(layers=0).model.encoder  # no layers: conv + positions + layer norm
    feats = torch.randn(1, 80, 3000)
    with torch.no_grad():
        full = encode(enc, feats).last_hidden_state
        short = encode(enc, feats[..., :400]).last_hidden_state
    assert short.shape[1] == 200
    torch.testing.assert_close(short[:, :199], full[:, :199])  # the last one saw conv padding instead


def test_encode_rejects_odd_or_too_long_inputs():
    enc = make_tiny_whisper().model.encoder
    for frames in (301, 3002):
        with pytest.raises(GeodistillError, match=f"input_features: {frames} Mel frames"):
            encode(enc, torch.zeros(1, 80, frames))


def test_masked_padding_does_not_reach_the_clip_positions():
    enc = make_tiny_whisper().model.encoder
    feats = torch.randn(2, 80, 400, generator=torch.Generator().manual_seed(2))
    mask = torch.ones(2, 400, dtype=torch.long)
    mask[0, 200:] = 0  # clip 0 has a 200-frame context inside a 400-frame batch
    changed = feats.clone()
    changed[0, :, 201:] = 5.0  # frames past the clip's context (frame 200 still feeds its last position)
    with torch.no_grad():
        a = encode(enc, feats, mask).last_hidden_state
        b = encode(enc, changed, mask).last_hidden_state
        c = encode(enc, changed).last_hidden_state
    torch.testing.assert_close(a[0, :100], b[0, :100], rtol=0, atol=1e-6)
    assert torch.equal(a[1], b[1])
    assert not torch.allclose(a[0, :100], c[0, :100], atol=1e-3)  # unmasked, the padding is attended to


def test_dynamic_frames_are_even_capped_and_name_a_too_long_clip():
    assert clip_frames(16000) == 100 and clip_frames(16001) == 101
    assert dynamic_frames(101, 0) == 102  # ceil(101 / 2) = 51 positions
    assert dynamic_frames(2990, 64) == 3000
    assert dynamic_frames(3000, 0) == 3000
    with pytest.raises(GeodistillError, match=r"long\.wav: 30\.0\d? s is longer than Whisper's 30 s"):
        dynamic_frames(3001, 64, name="long.wav")
    with pytest.raises(GeodistillError, match="context_margin: must be >= 0"):
        dynamic_frames(100, -1)


def test_jitter_moves_the_margin_within_its_bounds_reproducibly():
    assert jittered_frames(500, 64, 0) == dynamic_frames(500, 64)
    draws = [jittered_frames(500, 64, 64, torch.Generator().manual_seed(s)) for s in range(40)]
    j = min(64, 250 // 3)
    assert all(2 * (250 + 64 - j) <= f <= 2 * (250 + 64 + j) for f in draws)
    assert len(set(draws)) > 10
    assert draws == [jittered_frames(500, 64, 64, torch.Generator().manual_seed(s)) for s in range(40)]
    tiny = [jittered_frames(30, 0, 64, torch.Generator().manual_seed(s)) for s in range(20)]
    assert min(tiny) >= 30  # the context never cuts into the clip


def test_the_context_is_stored_on_the_config_and_overridden_by_flags():
    model = make_tiny_whisper()
    assert get_audio_context(model) == AudioContext("full", 64)
    set_audio_context(model, AudioContext("dynamic", 32))
    assert model.config.to_dict()["geodistill_audio_context"] == "dynamic"
    assert get_audio_context(model) == AudioContext("dynamic", 32)
    assert resolve_audio_context(model, "full") == AudioContext("full", 32)
    assert resolve_audio_context(model, None, 8) == AudioContext("dynamic", 8)
    with pytest.raises(GeodistillError, match="audio_context: must be one of"):
        resolve_audio_context(model, "half")
    with pytest.raises(GeodistillError, match="context_margin: must be an integer >= 0"):
        resolve_audio_context(model, None, -3)


def test_config_fields_default_to_full_and_are_validated():
    s = load_config(None).student
    assert (s.audio_context, s.context_margin, s.context_jitter) == ("full", 64, 0)
    s = load_config(None, ["student.audio_context=dynamic", "student.context_jitter=64"]).student
    assert (s.audio_context, s.context_jitter) == ("dynamic", 64)
    with pytest.raises(ConfigError) as err:
        load_config(
            None,
            ["student.audio_context=half", "student.context_margin=-1", "student.context_jitter=-2"],
        )
    msg = str(err.value)
    assert "student.audio_context: must be one of" in msg
    assert "student.context_margin: must be in 0..1500" in msg
    assert "student.context_jitter: must be >= 0" in msg
