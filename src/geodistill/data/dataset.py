"""One utterance at a time: decoded audio -> log-Mel features, transcript -> label tokens (unpadded)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from geodistill.data.audio import SAMPLE_RATE, load_audio, non_finite
from geodistill.data.bad import BadSampleError, BadSamples
from geodistill.data.specs import Utterance
from geodistill.data.tokens import MAX_LABEL_TOKENS, text_tokens

N_SAMPLES = 30 * SAMPLE_RATE  # 480000: Whisper's 30 s window


def normalise(text: str) -> str:
    """Lower-case, for upper-case corpora such as LibriSpeech ("HELLO WORLD" -> "hello world").

    Deliberately only that: punctuation and spelling are left as the corpus has them, so the student is
    not trained toward a text style the teacher never produces beyond case.
    """
    return text.lower()


class SpeechDataset(torch.utils.data.Dataset):
    """``ds[i]`` -> a sample dict, or None when utterance ``i`` is unusable (logged to ``bad``).

    Sample: {"id": str, "input_features": FloatTensor (n_mels, 3000), "labels": list[int] (text tokens + eot),
    "audio_seconds": float}, plus "audio": float32 array (n_samples,) at 16 kHz when ``with_audio``;
    no "input_features" when ``with_features`` is False.
    Never raises on a bad file (unless ``bad.strict``), so a DataLoader worker survives it.
    """

    def __init__(
        self,
        utts: Sequence[Utterance],
        processor,
        bad: BadSamples | None = None,
        normalise_text: bool = False,
        with_audio: bool = False,
        with_features: bool = True,
    ):
        self.utts = list(utts)
        self.processor = processor
        self.bad = bad if bad is not None else BadSamples()
        self.normalise_text = normalise_text
        self.with_audio = with_audio
        self.with_features = with_features  # False: no log-Mel (a cached shared encoder never reads them)

    def __len__(self) -> int:
        return len(self.utts)

    def features(self, audio: np.ndarray) -> torch.Tensor:
        """(n_samples,) float32 at 16 kHz -> (n_mels, 3000) log-Mel, padded/cut to 30 s by the extractor."""
        fe = self.processor.feature_extractor
        out = fe(audio, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        return torch.from_numpy(np.asarray(out[0], dtype=np.float32))

    def __getitem__(self, i: int) -> dict | None:
        utt = self.utts[i]
        try:
            audio = load_audio(utt)
        except BadSampleError as e:
            self.bad.add(utt if e.item == utt.audio else e.item, e.reason)
            return None
        return self.sample(utt, audio)

    def sample(self, utt: Utterance, audio: np.ndarray) -> dict | None:
        """The sample of ``utt`` from its decoded (n_samples,) 16 kHz audio, or None (logged) when unusable;
        also used for streamed (``hub:``) data, whose audio arrives decoded."""
        text = normalise(utt.text) if self.normalise_text else utt.text
        reason = None
        if audio.size == 0:
            reason = "no audio samples"
        elif nan := non_finite(audio):  # streamed audio arrives decoded; load_audio checks files itself
            reason = nan
        elif audio.size > N_SAMPLES:
            reason = f"longer than Whisper's 30 s window ({audio.size / SAMPLE_RATE:.2f} s)"
        elif not text.strip():
            reason = "empty transcript"
        if reason is None:
            labels = text_tokens(self.processor, text)
            if len(labels) > MAX_LABEL_TOKENS:
                reason = f"transcript too long ({len(labels)} tokens > {MAX_LABEL_TOKENS})"
        if reason is not None:
            self.bad.add(utt, reason)
            return None
        sample = {"id": utt.id, "labels": labels, "audio_seconds": audio.size / SAMPLE_RATE}
        if self.with_features:
            sample["input_features"] = self.features(audio)
        if self.with_audio:
            sample["audio"] = audio
        return sample
