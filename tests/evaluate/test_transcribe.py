import numpy as np
import pytest

from geodistill.evaluate.transcribe import features, generate_ids, is_multilingual, transcribe_batch


@pytest.fixture
def feats(tiny_processor):
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 24000, 8000)]
    return features(tiny_processor, clips)


def test_features_shape(feats):
    assert feats.shape == (3, 80, 3000)


@pytest.mark.parametrize("beam_size", [1, 2])
def test_transcribe_batch_returns_one_string_per_clip(tiny_whisper, tiny_processor, feats, beam_size):
    texts = transcribe_batch(tiny_whisper, tiny_processor, feats, beam_size=beam_size, max_new_tokens=5)
    assert len(texts) == 3
    assert all(isinstance(t, str) and t == t.strip() and t for t in texts)


def test_generate_returns_text_tokens_only(tiny_whisper, tiny_processor, feats):
    ids = generate_ids(tiny_whisper, feats, max_new_tokens=4)
    assert ids.shape == (3, 4)  # no <|startoftranscript|> / <|notimestamps|> prompt in front
    assert int(ids.max()) < tiny_processor.tokenizer.eos_token_id  # text tokens, no special ones
    texts = transcribe_batch(tiny_whisper, tiny_processor, feats, max_new_tokens=4)
    assert texts[0] == tiny_processor.tokenizer.decode(ids[0], skip_special_tokens=True).strip()


def test_batched_greedy_matches_one_by_one(tiny_whisper, tiny_processor, feats):
    batched = transcribe_batch(tiny_whisper, tiny_processor, feats, max_new_tokens=6)
    single = [
        transcribe_batch(tiny_whisper, tiny_processor, feats[i : i + 1], max_new_tokens=6) for i in range(3)
    ]
    assert batched == [s[0] for s in single]


def test_english_only_model_ignores_language(tiny_whisper, tiny_processor, feats):
    assert not is_multilingual(tiny_whisper)
    with_lang = transcribe_batch(tiny_whisper, tiny_processor, feats[:1], language="en", max_new_tokens=3)
    assert with_lang == transcribe_batch(tiny_whisper, tiny_processor, feats[:1], max_new_tokens=3)


def test_multilingual_detected_from_vocabulary_when_config_is_silent(tiny_whisper):
    tiny_whisper.generation_config.is_multilingual = None
    assert not is_multilingual(tiny_whisper)
    tiny_whisper.config.vocab_size = 51865  # what a multilingual checkpoint's config says
    assert is_multilingual(tiny_whisper)


def test_bad_beam_size(tiny_whisper, tiny_processor, feats):
    with pytest.raises(ValueError, match="beam_size"):
        transcribe_batch(tiny_whisper, tiny_processor, feats, beam_size=0)
