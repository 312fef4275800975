"""On-the-fly augmentation (data.augment): seeded per (seed, epoch, utterance), inside the clip, checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geodistill.config import AugmentConfig, ConfigError, load_config
from geodistill.data import SpeechDataset, load_spec
from geodistill.data.augment import Augmenter, draw
from geodistill.data.bad import BadSamples
from geodistill.data.sets import build_data
from geodistill.errors import DataError
from geodistill.train.batches import BatchStream

ALL = AugmentConfig(speed=0.2, noise=1.0, time_masks=2, time_mask_frames=30, freq_masks=2, freq_mask_bins=8)


@pytest.fixture
def utts(librispeech):
    return load_spec(librispeech)


def test_augmentation_is_a_function_of_seed_epoch_and_utterance(utts, tiny_processor):
    def sample(seed: int, epoch: int, augment: AugmentConfig | None = ALL) -> dict:
        ds = SpeechDataset(utts, tiny_processor, seed=seed, augment=augment, with_audio=True)
        ds.epoch = epoch
        return ds[0]

    clean, a, again = sample(0, 0, None), sample(0, 0), sample(0, 0)
    assert torch.equal(a["input_features"], again["input_features"])
    assert np.array_equal(a["audio"], again["audio"]) and a["audio_seconds"] == again["audio_seconds"]
    assert not torch.equal(a["input_features"], clean["input_features"])
    for other in (sample(1, 0), sample(0, 1)):  # another seed, the next epoch: fresh draws
        assert not torch.equal(a["input_features"], other["input_features"])
    # the speed draw changes the clip's length and the seconds the collator counts frames from
    assert a["audio"].size != clean["audio"].size and a["audio_seconds"] == a["audio"].size / 16000
    assert clean["labels"] == a["labels"]


def test_draws_do_not_touch_the_global_generators():
    torch.manual_seed(5)
    np.random.seed(5)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy())
    Augmenter(ALL).audio(np.ones(16000, dtype=np.float32) * 0.1, draw(0, 0, "x"))
    assert torch.equal(torch.get_rng_state(), before[0]) and np.array_equal(
        np.random.get_state()[1], before[1]
    )


def test_masks_stay_inside_the_clip_and_fill_with_its_mean():
    feats = torch.randn(80, 3000)
    out = Augmenter(AugmentConfig(time_masks=3, time_mask_frames=40, freq_masks=2)).features(
        feats,
        16000,
        draw(0, 0, "a"),  # a 1-s clip: 100 frames
    )
    assert torch.equal(out[:, 100:], feats[:, 100:])  # the padding is untouched
    changed = (out != feats).any(dim=0)
    assert changed[:100].any() and not changed[100:].any()
    fill = float(feats[:, :100].mean())
    assert torch.allclose(out[out != feats], torch.tensor(fill))


def test_speed_keeps_a_clip_within_30_s_and_noise_hits_the_drawn_snr():
    rng = np.random.default_rng(0)
    long = (0.1 * rng.standard_normal(29 * 16000)).astype(np.float32)
    slow = Augmenter(AugmentConfig(speed=0.3)).audio(long, np.random.default_rng(1))
    assert slow.size <= 30 * 16000
    clip = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    noisy = Augmenter(AugmentConfig(noise=1.0, noise_snr_min=10.0, noise_snr_max=10.0)).audio(
        clip, draw(0, 0, "n")
    )
    snr = 10 * np.log10(
        np.mean(clip.astype(np.float64) ** 2) / np.mean((noisy - clip).astype(np.float64) ** 2)
    )
    assert snr == pytest.approx(10.0, abs=0.5)


def test_the_batch_stream_hands_its_epoch_to_the_draws(utts, tiny_processor):
    ds = SpeechDataset(utts, tiny_processor, augment=ALL)
    stream = BatchStream(ds, lambda samples: samples, batch_size=len(utts), seed=0)
    first = next(stream)
    second = next(stream)  # the next epoch: same utterances, fresh draws
    assert stream.epoch == 1 and ds.epoch == 1
    by_id = {s["id"]: s["input_features"] for s in first}
    assert all(not torch.equal(by_id[s["id"]], s["input_features"]) for s in second)


def test_bad_augment_settings_are_one_line_each():
    with pytest.raises(ConfigError) as err:
        load_config(
            {"data": {"augment": {"speed": 0.7, "noise": 2.0, "noise_snr_min": 40.0, "time_masks": -1}}}
        )
    msg = str(err.value)
    for line in (
        "data.augment.speed: must be in [0, 0.5), got 0.7",
        "data.augment.noise: a share, must be in [0, 1], got 2.0",
        "data.augment.noise_snr_min: 40.0 is above noise_snr_max 30.0",
        "data.augment.time_masks: must be >= 0, got -1",
    ):
        assert line in msg
    with pytest.raises(ConfigError, match="data.augment.speed: the teacher cache's encoder states"):
        load_config(
            {
                "data": {"augment": {"speed": 0.1}},
                "teacher_cache": "cache",
                "loss": {"hidden_on": "encoder"},
            }
        )


def test_augmentation_with_a_cached_shared_encoder_is_refused(utts, tiny_processor):
    cfg = load_config({"data": {"train": "x", "augment": {"time_masks": 1}}})
    with pytest.raises(
        DataError, match=r"^data.augment: this student reads the teacher cache's encoder states"
    ):
        build_data(cfg, tiny_processor, None, BadSamples(), with_features=False)
