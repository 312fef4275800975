"""A run's data from its config: the training set, the validation utterances and the decoder prompt."""

from __future__ import annotations

from geodistill.config import Config
from geodistill.data.bad import BadSamples
from geodistill.data.dataset import SpeechDataset
from geodistill.data.hub import is_hub_spec
from geodistill.data.specs import load_spec
from geodistill.data.split import split_by_speaker
from geodistill.data.tokens import prompt_ids
from geodistill.errors import DataError


def build_data(cfg: Config, processor, model, bad: BadSamples, with_features: bool = True):
    d = cfg.data
    if not d.train:
        raise DataError("data.train: no training data spec given")
    streamed = is_hub_spec(d.train)  # read as it trains (geodistill.data.hub): nothing to list up front
    if streamed and not d.val:
        raise DataError(f"data.val: a streamed data.train ({d.train}) needs its own validation spec")
    if streamed and cfg.teacher_cache:
        raise DataError(f"teacher_cache: a cache is built over a listed data.train, not the stream {d.train}")
    utts = (
        []
        if streamed
        else load_spec(d.train, bad=bad, min_duration=d.min_duration, max_duration=d.max_duration)
    )
    if d.val:
        val = load_spec(d.val, bad=bad, min_duration=d.min_duration, max_duration=d.max_duration)
    else:
        utts, val = split_by_speaker(utts, d.val_fraction, cfg.train.seed)
    if not utts and not streamed:
        raise DataError(
            f"data.train: {d.train} has no usable utterances ({bad.count} skipped, see bad_samples.jsonl)"
        )
    if d.val_limit is not None:
        val = val[: d.val_limit]
    prompt = prompt_ids(processor, model, language=d.language)
    train_set = SpeechDataset(
        utts, processor, bad=bad, normalise_text=d.normalise_text, with_features=with_features
    )
    return train_set, val, prompt
