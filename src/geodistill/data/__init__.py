"""The data layer: specs -> utterances -> samples -> padded batches, with every bad item logged.

File -> :class:`Utterance` (``load_spec``) -> sample dict (``SpeechDataset``) -> batch (``WhisperCollator``).
Training samples can be augmented on the fly (``augment``: speed, noise, SpecAugment masks; ``data.augment``).
``pseudo`` (teacher transcripts as a manifest) sits on top and is not imported here.
"""

from geodistill.data.audio import SAMPLE_RATE, load_audio, probe
from geodistill.data.bad import BadSampleError, BadSamples
from geodistill.data.collate import LengthGroupedBatches, WhisperCollator, make_loader
from geodistill.data.dataset import SpeechDataset, normalise
from geodistill.data.specs import KINDS, Utterance, load_spec, parse_spec
from geodistill.data.split import speaker_of, split_by_speaker
from geodistill.data.tokens import prompt_ids, text_tokens

__all__ = [
    "KINDS",
    "SAMPLE_RATE",
    "BadSampleError",
    "BadSamples",
    "LengthGroupedBatches",
    "SpeechDataset",
    "Utterance",
    "WhisperCollator",
    "load_audio",
    "load_spec",
    "make_loader",
    "normalise",
    "parse_spec",
    "probe",
    "prompt_ids",
    "speaker_of",
    "split_by_speaker",
    "text_tokens",
]
