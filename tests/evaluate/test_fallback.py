"""The temperature fallback where no library applies it (``geodistill.decoding.fallback``): its measures,
its retry rule, and the HF and CTranslate2 engines at dynamic audio context."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geodistill.decoding import fallback
from geodistill.decoding.whisper import features, generate_ids
from geodistill.models.context import AudioContext

EOS = 50256
VOCAB = 51864


def test_a_loop_compresses_past_the_threshold_and_varied_text_does_not():
    loop = torch.tensor([262, 3797] * 40)
    varied = torch.tensor([464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13])
    assert fallback.compression_ratio(loop, VOCAB) > fallback.TOKEN_COMPRESSION_RATIO_THRESHOLD
    assert fallback.compression_ratio(varied, VOCAB) < fallback.TOKEN_COMPRESSION_RATIO_THRESHOLD
    assert fallback.compression_ratio(loop[:0], VOCAB) == 0.0


def test_the_mean_log_probability_counts_the_tokens_and_the_end_token():
    logprobs = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6], [1 / 3] * 3]))
    row = torch.tensor([0, 2, 1, 1])  # token 1 plays <|endoftext|>: the first one ends the row
    want = (np.log(0.5) + np.log(0.8) + np.log(0.2)) / 3
    assert fallback.mean_logprob(logprobs, row, eos=1) == pytest.approx(want)
    unfinished = (np.log(0.5) + np.log(0.8)) / 2  # no end token: the tokens alone
    assert fallback.mean_logprob(logprobs[:2], row[:2], eos=1) == pytest.approx(unfinished)


def _attempts(table: dict[float, dict[int, tuple[list[int], float]]], calls: list):
    """An Attempt answering from ``table[temperature][row]`` = (text tokens, mean log-probability)."""

    def attempt(rows: list[int], temperature: float):
        calls.append((temperature, list(rows)))
        out = [table[temperature][r] for r in rows]
        return [torch.tensor([*ids, EOS, EOS]) for ids, _ in out], [lp for _, lp in out]

    return attempt


def test_only_the_clips_that_fail_are_retried_and_the_first_that_passes_is_kept():
    loop, good, other = [262, 3797] * 30, [464, 2068, 7586], [18045, 625, 262]
    table = {
        0.0: {0: (loop, -0.2), 1: (good, -0.3), 2: (other, -2.5)},  # 0 loops, 2 is garbage
        0.2: {0: (good, -0.4), 2: (loop, -0.1)},
        0.4: {2: (other, -0.5)},
    }
    calls: list = []
    stats: dict = {}
    ids = fallback.decode(_attempts(table, calls), 3, EOS, VOCAB, stats=stats)
    assert calls == [(0.0, [0, 1, 2]), (0.2, [0, 2]), (0.4, [2])]
    assert ids[0].tolist()[:3] == good and ids[1].tolist()[:3] == good and ids[2].tolist()[:3] == other
    assert (ids[:, -1] == EOS).all() and stats["fallback_retries"] == 2


def test_a_silent_clip_is_not_retried_and_left_empty_when_its_log_probability_is_low_too():
    table = {0.0: {0: ([262, 3797] * 30, -1.5), 1: ([464, 2068], -1.5)}}
    calls: list = []
    ids = fallback.decode(_attempts(table, calls), 2, EOS, VOCAB, no_speech=[0.9, 0.8])
    assert calls == [(0.0, [0, 1])] and (ids == EOS).all()


def test_when_every_temperature_fails_the_last_attempt_is_kept():
    loop = [262, 3797] * 30
    table = {t: {0: ([*loop, int(10 * t)], -0.1)} for t in fallback.FALLBACK_TEMPERATURES}
    calls: list = []
    ids = fallback.decode(_attempts(table, calls), 1, EOS, VOCAB)
    assert len(calls) == len(fallback.FALLBACK_TEMPERATURES) and ids[0].tolist()[len(loop)] == 10


def _short_features(processor, seed: int = 0):
    rng = np.random.default_rng(seed)
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 9000)]
    return features(processor, clips, AudioContext("dynamic", 8))


def test_hf_at_dynamic_context_retries_a_greedy_loop_by_seeded_sampling(tiny_whisper, tiny_processor):
    """The random model loops greedily; at dynamic context the fallback replaces the loop, samples the same
    way every call, leaves torch's RNG alone, and hands the no-speech probabilities over."""
    feats = _short_features(tiny_processor)
    assert feats.shape[-1] < 3000
    greedy = generate_ids(tiny_whisper, feats, max_new_tokens=20)
    first = fallback.text_tokens(greedy[0], EOS)
    assert fallback.compression_ratio(first, VOCAB) > fallback.TOKEN_COMPRESSION_RATIO_THRESHOLD
    state = torch.random.get_rng_state()
    found: list = []
    ids = generate_ids(tiny_whisper, feats, max_new_tokens=20, fallback=True, no_speech=found)
    assert torch.equal(torch.random.get_rng_state(), state) and len(found) == 2
    assert ids.tolist() == generate_ids(tiny_whisper, feats, max_new_tokens=20, fallback=True).tolist()
    assert ids[0].tolist() != greedy[0].tolist()


def test_beam_search_at_dynamic_context_falls_back_too(tiny_whisper, tiny_processor):
    feats = _short_features(tiny_processor, seed=2)
    beam = generate_ids(tiny_whisper, feats, beam_size=2, max_new_tokens=12)
    ids = generate_ids(tiny_whisper, feats, beam_size=2, max_new_tokens=12, fallback=True)
    assert ids.shape[0] == 2 and ids.tolist() != beam.tolist()


def test_ct2_at_dynamic_context_falls_back_without_faster_whisper(tmp_path, tiny_processor, monkeypatch):
    """CTranslate2 samples in its own generate and reports its scores; faster-whisper, which would pad to
    30 s, is never made."""
    pytest.importorskip("ctranslate2")
    from geodistill.decoding.engines import Ct2Whisper, load_engine
    from tests.conftest import make_tiny_whisper

    folder = tmp_path / "hf"
    make_tiny_whisper().save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    monkeypatch.setenv("GEODISTILL_CACHE", str(tmp_path / "cache"))
    model, _, _ = load_engine(str(folder), "cpu", "ct2", compute_type="float32")
    monkeypatch.setattr(Ct2Whisper, "faster_whisper", lambda self: pytest.fail("faster-whisper made"))
    feats = _short_features(tiny_processor)
    means: list[float] = []
    sampled = model.generate(feats, max_new_tokens=10, temperature=0.6, logprobs=means)
    assert sampled.shape[0] == 2 and len(means) == 2 and all(m < 0 for m in means)
    greedy = generate_ids(model, feats, max_new_tokens=20)
    ids = generate_ids(model, feats, max_new_tokens=20, fallback=True)
    assert ids.tolist() != greedy.tolist()


@pytest.mark.integration
def test_a_real_clip_that_loops_greedily_is_rescued(alsa_wav):
    """The stock tiny.en at dynamic context (its 30-s training never showed it a short one) loops on a real
    'Rear Center' prompt greedily, to the token cap; the fallback stops the loop and keeps the words."""
    from geodistill.data.audio import load_audio
    from geodistill.models import load_whisper

    model, processor = load_whisper("tiny.en", device="cpu")
    audio = load_audio(alsa_wav.parent / "Rear_Center.wav")
    feats = features(processor, [audio], AudioContext("dynamic", 64))
    greedy = generate_ids(model.eval(), feats, max_new_tokens=40)
    assert greedy.shape[1] == 40 and (greedy != EOS).all()  # the loop, to the cap
    ids = generate_ids(model, feats, max_new_tokens=40, fallback=True)
    text = processor.tokenizer.decode(ids[0], skip_special_tokens=True).lower()
    assert ids.shape[1] < 40 and "rear center" in text
    tokens = fallback.text_tokens(ids[0], EOS)
    assert fallback.compression_ratio(tokens, VOCAB) < fallback.TOKEN_COMPRESSION_RATIO_THRESHOLD


def test_timed_transcripts_at_dynamic_context_fall_back_clip_by_clip(tiny_whisper, tiny_processor):
    """Subtitles of a dynamic-context model with the fallback on (transformers' loop, given both the short
    features and the encoder states): each clip decodes, the same way every call, inside its duration."""
    from geodistill.decoding.longform import Decoding
    from geodistill.decoding.timed import timed_transcripts

    rng = np.random.default_rng(3)
    clips = [0.1 * rng.standard_normal(n).astype(np.float32) for n in (16000, 9000)]
    how = Decoding(max_new_tokens=12, fallback=True, dynamic=True)

    def featurize(group):
        return features(tiny_processor, group, AudioContext("dynamic", 8))

    got = timed_transcripts(tiny_whisper, tiny_processor, clips, how, featurize)
    assert got == timed_transcripts(tiny_whisper, tiny_processor, clips, how, featurize)
    for clip, t in zip(clips, got, strict=True):
        assert all(0 <= s.start <= s.end <= clip.size / 16000 for s in t.segments)
