"""A run's data from its config: the training set, the validation utterances and the decoder prompts."""

from __future__ import annotations

from geodistill.config import Config
from geodistill.data.bad import BadSamples
from geodistill.data.dataset import SpeechDataset, check_utterances
from geodistill.data.hub import is_hub_spec
from geodistill.data.specs import load_spec
from geodistill.data.split import split_by_speaker
from geodistill.data.tokens import Prompts, language_code
from geodistill.errors import DataError


def run_prompts(cfg: Config, processor, model, name: str | None = None) -> Prompts:
    """The run's prompt builder: ``data.language`` / ``data.task`` are the defaults for rows that name none.
    ``name``: what to call the model in an error (the teacher spec)."""
    d = cfg.data
    if d.language is not None and language_code(d.language) is None:
        raise DataError(
            f"data.language: {d.language!r} is not a Whisper language (e.g. 'en', 'de', 'english')"
        )
    prompts = Prompts(processor, model, language=d.language, task=d.task, name=name or cfg.teacher)
    if d.language is not None or not prompts.multilingual:
        problem = prompts.problem(d.language, d.task)
        if problem is not None:
            raise DataError(f"data.language / data.task: {problem}")
    return prompts


def build_data(
    cfg: Config, processor, model, bad: BadSamples, with_features: bool = True, teacher_extractor=None
):
    """(training set, validation utterances, default prompt): the default prompt is ``data.language`` /
    ``data.task``'s without timestamps ([] when a multilingual model has no default language: every row
    then names its own). ``teacher_extractor``: the teacher's feature extractor when its Mels differ."""
    d = cfg.data
    if not d.train:
        raise DataError("data.train: no training data spec given")
    streamed = is_hub_spec(d.train)  # read as it trains (geodistill.data.hub): nothing to list up front
    if streamed and not d.val:
        raise DataError(f"data.val: a streamed data.train ({d.train}) needs its own validation spec")
    if streamed and cfg.teacher_cache:
        raise DataError(f"teacher_cache: a cache is built over a listed data.train, not the stream {d.train}")
    if d.augment.active and not with_features:
        raise DataError(
            "data.augment: this student reads the teacher cache's encoder states instead of audio (a shared "
            "frozen encoder), so there is nothing to augment; drop data.augment or the cache"
        )
    prompts = run_prompts(cfg, processor, model)
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
    check_utterances(prompts, [*utts, *val])
    if d.val_limit is not None:
        val = val[: d.val_limit]
    train_set = SpeechDataset(
        utts,
        processor,
        bad=bad,
        normalise_text=d.normalise_text,
        with_features=with_features,
        prompts=prompts,
        timestamp_probability=d.timestamp_probability,
        seed=cfg.train.seed,
        teacher_extractor=teacher_extractor,
        augment=d.augment,
    )
    default = prompts.ids() if prompts.problem(None, None) is None else []
    return train_set, val, default
