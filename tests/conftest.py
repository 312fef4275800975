"""Shared fixtures: tiny random Whisper models that use the real (vendored) tiny.en tokenizer, real speech."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # on 2 shared cores one thread is much faster than many

# The real tiny.en tokenizer and CTranslate2 config.json, vendored (see tests/fixtures/README.md) so unit
# tests never need the weights package; only tests marked `integration` use geodistill[models].
TINY_EN_FIXTURES = Path(__file__).parent / "fixtures" / "tiny_en"
TINY_EN_TOKENIZER = TINY_EN_FIXTURES / "tokenizer.json"
TINY_EN_CT2_CONFIG = TINY_EN_FIXTURES / "config.json"


@pytest.fixture(scope="session")
def tiny_processor():
    """A WhisperProcessor built from the vendored tiny.en tokenizer (80 mel bins, English-only vocabulary)."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    tok = WhisperTokenizerFast(tokenizer_file=str(TINY_EN_TOKENIZER), pad_token="<|endoftext|>")
    return WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tok)


def make_tiny_whisper(d_model: int = 32, layers: int = 2, heads: int = 2, seed: int = 0, vocab: int = 51864):
    """A random English-only Whisper with tiny widths but the real vocabulary and special tokens."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    cfg = WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=80,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model,
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        bos_token_id=50256,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        bos_token_id=50256,
        no_timestamps_token_id=50362,
        is_multilingual=False,
        max_length=448,
        begin_suppress_tokens=[220, 50256],
    )
    return model


@pytest.fixture
def tiny_whisper():
    return make_tiny_whisper()


@pytest.fixture(scope="session")
def alsa_wav() -> Path:
    """Real recorded speech: 'Front Center' from Debian's alsa-utils (installed by .ci/run)."""
    path = Path("/usr/share/sounds/alsa/Front_Center.wav")
    if not path.is_file():
        pytest.skip("alsa-utils voice prompts not installed (apt-get install alsa-utils)")
    return path


@pytest.fixture(autouse=True)
def _own_probe_store(tmp_path_factory, monkeypatch):
    """Each test stores its probed audio durations in a folder of its own (geodistill.data.probes), so one
    test's stored answers never stand in for another's files, nor land in the user's cache."""
    from geodistill.data import probes

    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setattr(probes, "cache_dir", lambda: folder)
