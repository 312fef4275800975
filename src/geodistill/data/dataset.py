"""One utterance at a time: decoded audio -> log-Mel features, transcript -> its prompt + label tokens.

Each utterance gets its own decoder prompt (``geodistill.data.tokens.Prompts``): its language and task, and
timestamps or not. With ``timestamp_probability`` p, an utterance that has a timestamped transcript
(``Utterance.text_timestamps``) trains on it, with a prompt without <|notimestamps|>, when
``timestamp_draw(seed, id) < p``: the choice is fixed per utterance for the run (a function of the seed
and its id), so a resumed run and a teacher cache see the very labels of the first run.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch

from geodistill.config import AugmentConfig
from geodistill.data.audio import SAMPLE_RATE, load_audio, non_finite
from geodistill.data.augment import Augmenter, draw
from geodistill.data.bad import BadSampleError, BadSamples
from geodistill.data.specs import Utterance
from geodistill.data.tokens import MAX_LABEL_TOKENS, Prompts, text_tokens, timestamped_tokens
from geodistill.errors import DataError

N_SAMPLES = 30 * SAMPLE_RATE  # 480000: Whisper's 30 s window


def normalise(text: str) -> str:
    """Lower-case, for upper-case corpora such as LibriSpeech ("HELLO WORLD" -> "hello world").

    Deliberately only that: punctuation and spelling are left as the corpus has them, so the student is
    not trained toward a text style the teacher never produces beyond case.
    """
    return text.lower()


def timestamp_draw(seed: int, uid: str) -> float:
    """A number in [0, 1) fixed by (seed, utterance id): below ``timestamp_probability`` -> timestamps."""
    return zlib.crc32(f"{seed}|{uid}".encode()) / 2**32


def check_utterances(prompts: Prompts, utts: Iterable[Utterance]) -> None:
    """Refuse, in one line naming its row (file:line), the first utterance the model cannot take: a language
    it does not know or cannot serve (an English-only model), a task it has not, no language at all."""
    for u in utts:
        problem = prompts.problem(u.language, u.task)
        if problem is not None:
            raise DataError(f"{u.where or u.id}: {problem}")


class SpeechDataset(torch.utils.data.Dataset):
    """``ds[i]`` -> a sample dict, or None when utterance ``i`` is unusable (logged to ``bad``).

    Sample: {"id": str, "input_features": FloatTensor (n_mels, 3000), "labels": list[int] (text tokens + eot),
    "prompt": list[int] (when ``prompts`` is given), "audio_seconds": float}, plus "audio": float32 array
    (n_samples,) at 16 kHz when ``with_audio``; no "input_features" when ``with_features`` is False;
    "teacher_features" (n_mels_t, 3000) when ``teacher_extractor`` is given (a teacher with another Mel
    count than the student's, e.g. large-v3's 128 under an 80-Mel student).
    Never raises on a bad file (unless ``bad.strict``), so a DataLoader worker survives it.
    With ``augment`` (``data.augment``, training only) each sample's audio and features are augmented as
    drawn from (``seed``, ``epoch``, its id) (``geodistill.data.augment``); "audio_seconds" is then the
    augmented clip's length.
    """

    def __init__(
        self,
        utts: Sequence[Utterance],
        processor,
        bad: BadSamples | None = None,
        normalise_text: bool = False,
        with_audio: bool = False,
        with_features: bool = True,
        prompts: Prompts | None = None,
        timestamp_probability: float = 0.0,
        seed: int = 0,
        teacher_extractor=None,
        augment: AugmentConfig | None = None,
    ):
        self.utts = list(utts)
        self.processor = processor
        self.bad = bad if bad is not None else BadSamples()
        self.normalise_text = normalise_text
        self.with_audio = with_audio
        self.with_features = with_features  # False: no log-Mel (a cached shared encoder never reads them)
        self.prompts = prompts  # None: the collator's one prompt for every sample
        self.timestamp_probability, self.seed = timestamp_probability, seed
        self.teacher_extractor = teacher_extractor  # the teacher's feature extractor when its Mels differ
        # training only: data.augment, drawn per (seed, epoch, utterance); the batch stream sets ``epoch``
        self.augment = Augmenter(augment) if augment is not None and augment.active else None
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.utts)

    def timestamps(self, utt: Utterance) -> bool:
        """Whether ``utt`` trains on its timestamped transcript (see the module docstring)."""
        p = self.timestamp_probability
        return bool(utt.text_timestamps) and p > 0 and timestamp_draw(self.seed, utt.id) < p

    def features(self, audio: np.ndarray, extractor=None) -> torch.Tensor:
        """(n_samples,) float32 at 16 kHz -> (n_mels, 3000) log-Mel, padded/cut to 30 s by the extractor."""
        fe = extractor or self.processor.feature_extractor
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
        text = self.as_trained(utt.text)
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
            try:
                prompt, labels = self.tokens(utt, text)
            except DataError as e:
                prompt, labels, reason = [], [], str(e)
            if len(labels) > MAX_LABEL_TOKENS:
                reason = f"transcript too long ({len(labels)} tokens > {MAX_LABEL_TOKENS})"
        if reason is not None:
            self.bad.add(utt, reason)
            return None
        rng = draw(self.seed, self.epoch, utt.id) if self.augment is not None else None
        if self.augment is not None and rng is not None:
            audio = self.augment.audio(audio, rng)
        sample = {"id": utt.id, "labels": labels, "audio_seconds": audio.size / SAMPLE_RATE}
        if prompt:
            sample["prompt"] = prompt
        if self.with_features:
            sample["input_features"] = self.features(audio)
            if self.augment is not None and rng is not None:
                sample["input_features"] = self.augment.features(sample["input_features"], audio.size, rng)
        if self.teacher_extractor is not None:
            sample["teacher_features"] = self.features(audio, self.teacher_extractor)
        if self.with_audio:
            sample["audio"] = audio
        return sample

    def label_ids(self) -> Iterator[list[int]]:
        """Each listed utterance's labels, tokenised as ``sample`` tokenises them (its timestamp draw
        included); an utterance whose text the model cannot take is left out, as ``sample`` leaves it."""
        for utt in self.utts:
            text = self.as_trained(utt.text)
            if not text.strip():
                continue
            try:
                yield self.tokens(utt, text)[1]
            except DataError:
                continue

    def as_trained(self, text: str) -> str:
        """A transcript as the labels take it: normalised with ``data.normalise_text``, else as written."""
        return normalise(text) if self.normalise_text else text

    def tokens(self, utt: Utterance, text: str) -> tuple[list[int], list[int]]:
        """(prompt, labels) of ``utt``: its own prompt ([] without ``prompts``) and text tokens + eot, the
        timestamped ones when it draws timestamps. DataError when the model cannot take it."""
        if self.prompts is None:
            return [], text_tokens(self.processor, text)
        stamped = self.timestamps(utt)
        prompt = self.prompts.ids(utt.language, utt.task, timestamps=stamped)
        if not stamped:
            return prompt, text_tokens(self.processor, text)
        assert utt.text_timestamps is not None  # timestamps() says so
        stamped_text = self.as_trained(utt.text_timestamps)
        return prompt, timestamped_tokens(self.processor, stamped_text, self.prompts.timestamp_begin)
