import numpy as np
import pytest
import soundfile as sf

from geodistill.decoding.whisper import features, generate_ids, is_multilingual, transcribe_batch


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


def test_transcribe_files_in_order(tiny_model_dir, tmp_path):
    from geodistill.evaluate.transcribe import transcribe_files

    for i, rate in enumerate((16000, 44100, 8000)):  # resampled to 16 kHz whatever the file's rate
        n = int(1.5 * rate)
        tone = 0.2 * np.sin(2 * np.pi * (300 + 100 * i) * np.arange(n) / rate)
        sf.write(tmp_path / f"{i}.wav", tone.astype(np.float32), rate)
    paths = [tmp_path / f"{i}.wav" for i in range(3)]
    texts = transcribe_files(str(tiny_model_dir), paths, device="cpu", batch_size=2)
    assert len(texts) == 3 and all(isinstance(x, str) for x in texts)
    assert transcribe_files(str(tiny_model_dir), paths[2:], device="cpu") == texts[2:]


@pytest.mark.parametrize("content", [b"", b"RIFF\x10\x00\x00\x00WAVEjunk" * 3, None])
def test_transcribe_files_names_an_unreadable_file(tiny_model_dir, tmp_path, content):
    from geodistill.errors import DataError
    from geodistill.evaluate.transcribe import transcribe_files

    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match="bad.wav") as info:
        transcribe_files(str(tiny_model_dir), [path], device="cpu")
    assert "\n" not in str(info.value)


def test_transcribe_files_refuses_audio_longer_than_the_window(tiny_model_dir, tmp_path):
    from geodistill.errors import DataError
    from geodistill.evaluate.transcribe import transcribe_files

    sf.write(tmp_path / "long.wav", np.zeros(31 * 16000, dtype=np.float32), 16000)
    with pytest.raises(DataError, match="long.wav: 31.0 s is longer than"):
        transcribe_files(str(tiny_model_dir), [tmp_path / "long.wav"], device="cpu")


def test_default_token_cap_is_half_the_decoder_context(tiny_whisper, feats):
    from geodistill.decoding.whisper import default_max_new_tokens

    assert default_max_new_tokens(tiny_whisper) == 224  # openai/whisper's sample_len for a 448-token context
    tiny_whisper.config.max_target_positions = (
        12  # a random model never stops by itself: the cap must stop it
    )
    assert generate_ids(tiny_whisper, feats[:1]).shape[1] <= 6
