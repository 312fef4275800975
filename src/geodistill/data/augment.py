"""On-the-fly augmentation of training audio (``data.augment``): speed perturbation, noise, SpecAugment masks.

Each training sample draws its augmentation from its own generator, seeded by (train.seed, epoch, utterance
id) (``draw``): an utterance is seen once per epoch, and a step's batch is fixed by (seed, step), so the
draws are too. Nothing else is consumed (no global RNG, no worker state): a run resumed from a checkpoint,
or run with DataLoader workers, augments every sample exactly as an uninterrupted one does, and the next
epoch draws afresh.

Order, per sample: speed (resampled with soxr: tempo and pitch together, as Kaldi's speed perturbation; a
factor that would stretch the clip past 30 s is raised to fit), then white noise at a drawn SNR, then the
student's log-Mel features with time and frequency masks (SpecAugment, Park et al. 2019), filled with the
clip's mean and kept inside the clip's own frames (not the 30-s padding). A teacher run on the same batch
hears the sped-up, noisy audio but sees no masks: it labels what the student is given to hear.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import soxr
import torch

from geodistill.config import AugmentConfig
from geodistill.data.audio import SAMPLE_RATE

HOP = 160  # samples per 10-ms log-Mel frame
MAX_SAMPLES = 30 * SAMPLE_RATE  # Whisper's window: a slowed-down clip is kept within it


def draw(seed: int, epoch: int, uid: str) -> np.random.Generator:
    """The generator of one sample's augmentation: a function of (seed, epoch, utterance id) only."""
    return np.random.default_rng([seed, epoch, zlib.crc32(uid.encode())])


class Augmenter:
    """``data.augment`` applied to one sample: ``audio`` before the log-Mel features, ``features`` after."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def audio(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n,) float32 at 16 kHz -> sped up or down and with noise, as drawn (float32, at most 30 s)."""
        c = self.cfg
        if c.speed > 0:
            factor = max(rng.uniform(1 - c.speed, 1 + c.speed), audio.size / MAX_SAMPLES)
            if factor != 1.0:
                audio = soxr.resample(audio, SAMPLE_RATE, SAMPLE_RATE / factor)[:MAX_SAMPLES]
        if c.noise > 0 and rng.random() < c.noise:
            snr = rng.uniform(c.noise_snr_min, c.noise_snr_max)
            power = float(np.mean(np.square(audio, dtype=np.float64)))
            audio = audio + rng.standard_normal(audio.size) * math.sqrt(power / 10 ** (snr / 10))
        return np.asarray(audio, dtype=np.float32)

    def features(self, features: torch.Tensor, n_samples: int, rng: np.random.Generator) -> torch.Tensor:
        """log-Mel (n_mels, F) of a clip of ``n_samples`` -> a copy with the drawn time and frequency masks
        over its own frames, filled with the clip's mean."""
        c = self.cfg
        if not (c.time_masks or c.freq_masks):
            return features
        out = features.clone()
        frames = min(max(math.ceil(n_samples / HOP), 1), out.shape[1])
        fill = float(out[:, :frames].mean())
        for _ in range(c.time_masks):
            width = int(rng.integers(0, min(c.time_mask_frames, frames) + 1))
            start = int(rng.integers(0, frames - width + 1))
            out[:, start : start + width] = fill
        for _ in range(c.freq_masks):
            width = int(rng.integers(0, min(c.freq_mask_bins, out.shape[0]) + 1))
            start = int(rng.integers(0, out.shape[0] - width + 1))
            out[start : start + width, :frames] = fill
        return out
