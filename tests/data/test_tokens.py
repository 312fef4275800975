"""The decoder prompt equals what generate() forces; label tokens are Whisper-style text + eot."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from geodistill.data import prompt_ids, text_tokens
from geodistill.errors import DataError

LANG_TO_ID = {f"<|{code}|>": 50259 + i for i, code in enumerate(list(LANGUAGES)[:99])}  # large-v2 layout


def multilingual_generation_config() -> GenerationConfig:
    return GenerationConfig(
        decoder_start_token_id=50258,
        eos_token_id=50257,
        pad_token_id=50257,
        bos_token_id=50257,
        no_timestamps_token_id=50363,
        is_multilingual=True,
        lang_to_id=LANG_TO_ID,
        task_to_id={"translate": 50358, "transcribe": 50359},
        max_length=448,
    )


def tiny_multilingual() -> WhisperForConditionalGeneration:
    cfg = WhisperConfig(
        vocab_size=51865,
        num_mel_bins=80,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        decoder_start_token_id=50258,
        eos_token_id=50257,
        pad_token_id=50257,
        bos_token_id=50257,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = multilingual_generation_config()
    return model


def _forced_prefix(model, n: int, **kwargs) -> list[int]:
    out = model.generate(torch.zeros(1, 80, 3000), max_new_tokens=1, return_dict_in_generate=True, **kwargs)
    return out.sequences[0, :n].tolist()


def test_english_only_prompt_matches_generate(tiny_processor, tiny_whisper):
    prompt = prompt_ids(tiny_processor, tiny_whisper)
    assert prompt == [50257, 50362]
    assert _forced_prefix(tiny_whisper, len(prompt)) == prompt
    assert prompt_ids(tiny_processor.tokenizer, tiny_whisper.generation_config, language="en") == prompt


def test_multilingual_prompt_matches_generate(tiny_processor):
    model = tiny_multilingual()
    prompt = prompt_ids(tiny_processor, model, language="en")
    assert prompt == [50258, 50259, 50359, 50363]
    assert _forced_prefix(model, 4, language="en", task="transcribe") == prompt
    german = prompt_ids(tiny_processor, model.generation_config, language="german", task="translate")
    assert german == [50258, LANG_TO_ID["<|de|>"], 50358, 50363]
    assert _forced_prefix(model, 4, language="de", task="translate") == german
    assert prompt_ids(tiny_processor, model, language="<|en|>") == prompt


def test_multilingual_needs_a_known_language(tiny_processor):
    gen = multilingual_generation_config()
    with pytest.raises(DataError, match="needs a language"):
        prompt_ids(tiny_processor, gen)
    with pytest.raises(DataError, match="'klingon' is not a Whisper language"):
        prompt_ids(tiny_processor, gen, language="klingon")
    with pytest.raises(DataError, match="task 'summarise'"):
        prompt_ids(tiny_processor, gen, language="en", task="summarise")


def test_ids_fall_back_to_the_tokenizer(tiny_processor):
    bare = GenerationConfig(is_multilingual=True)  # an old config without the id tables
    assert prompt_ids(tiny_processor, bare, language="en") == [50257, 50258, 50358, 50362]


def test_text_tokens_are_whisper_style(tiny_processor):
    tok = tiny_processor.tokenizer
    ids = text_tokens(tiny_processor, "  Hello, World!  ")
    assert ids[-1] == tok.eos_token_id == 50256
    assert ids[:-1] == tok(" Hello, World!", add_special_tokens=False).input_ids
    assert tok.decode(ids[:-1]) == " Hello, World!"
    assert all(i < 50256 for i in ids[:-1])
