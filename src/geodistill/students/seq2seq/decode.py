"""Decoding with a Whisper model (any: a student, a teacher, a hub id): loading through the chosen engine,
transcripts of clips for ``transcribe``, and utterances scored by ``evaluate`` and validation.

Compute time covers ``model.generate`` only (encoder + KV-cached decoding, device-synchronised); audio
decoding and log-Mel extraction are timed separately (``feature_seconds``). The audio context (full 30 s,
or the clip + a margin: ``geodistill.models.context``) is the model's stored one unless the options
override it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from geodistill.data import BadSamples, Utterance
from geodistill.data.tokens import Prompts, timestamped_text
from geodistill.decoding.batches import Decoded, decode_batches
from geodistill.decoding.engines import engine_fields, load_engine
from geodistill.decoding.fallback import NO_SPEECH_THRESHOLD
from geodistill.decoding.longform import Decoding, decode_audios
from geodistill.decoding.options import DEFAULT_COMPUTE_TYPE, DecodeOptions, resolve_dtype
from geodistill.decoding.segments import Transcript
from geodistill.decoding.speed import Timer
from geodistill.decoding.timed import check_word_timestamps, timed_transcripts
from geodistill.decoding.whisper import (
    WHISPER_WINDOW,
    check_task,
    default_max_new_tokens,
    features,
    generate_ids,
)
from geodistill.decoding.whispercpp import WhisperCppModel
from geodistill.models import load_whisper, resolve_device
from geodistill.models.context import AudioContext, get_audio_context, resolve_audio_context
from geodistill.students.family import Texts, Timed

TIMING = (
    "model.generate only (encoder + KV-cached decoding), device-synchronised; audio decoding and "
    "log-Mel extraction excluded (feature_seconds)"
)
WINDOW = WHISPER_WINDOW

log = logging.getLogger("geodistill")


def load(spec, device: str, options: DecodeOptions) -> tuple:
    """(model, processor, device): a spec loaded in eval mode, or a loaded (model, processor) where it is.

    ``options.engine`` "ct2" gives a CTranslate2 model with the same generate interface
    (``geodistill.decoding.engines``); ``options.assistant`` (a student spec) makes the model draft with it
    (speculative decoding, ``geodistill.decoding.assistant``). ``options.dtype``: the weights' dtype of a
    spec (auto: fp16 on CUDA, fp32 on the CPU); a loaded pair keeps its own.
    """
    if options.engine != "hf" or options.assistant is not None:
        o = options
        model, processor, dev = load_engine(
            spec, str(device), o.engine, o.compute_type, o.assistant, o.fallback, o.dtype
        )
        if isinstance(model, WhisperCppModel):  # it decodes audio itself: hand it the context to use
            margin = model.margin if o.context_margin is None else o.context_margin
            context = AudioContext(o.audio_context or model.audio_context, margin)
            model.use_context(context.mode, context.margin)
        return model, processor, dev
    if isinstance(spec, tuple | list):
        loaded, processor = spec
        return loaded, processor, loaded.device
    dev = resolve_device(str(device))
    loaded, processor = load_whisper(str(spec), device=str(dev), dtype=resolve_dtype(options.dtype, dev))
    return loaded.eval(), processor, loaded.device


def texts(model, processor, options: DecodeOptions) -> Texts:
    """(audios, names) -> stripped transcripts by Whisper's decoding (``decode_audios``: short clips
    batched, long ones by long-form generate) at the resolved audio context; ``fallback`` None means on.

    A clip whose no-speech probability is over Whisper's threshold (0.6) gets one warning naming it: it is
    likely silence or noise, and its transcript a hallucination."""
    context = resolve_audio_context(model, options.audio_context, options.context_margin)
    fallback = True if options.fallback is None else options.fallback
    check_task(model, options.task)
    how = Decoding(
        options.language, options.beam_size, None, fallback, dynamic=context.dynamic, vad=options.vad
    )
    how.batch_size, how.long_form_mode, how.task = options.batch_size, options.long_form_mode, options.task

    def run(audios: list[np.ndarray], names: Sequence) -> list[str]:
        ids = decode_audios(
            model,
            processor,
            audios,
            how,
            Timer(),
            Timer(),
            featurize=lambda clips: features(processor, clips, context, _named(names, clips)),
        )
        out = processor.tokenizer.batch_decode([x.tolist() for x in ids], skip_special_tokens=True)
        for name, p in zip(names, how.no_speech, strict=True):
            if p is not None and p > NO_SPEECH_THRESHOLD:
                log.warning(
                    f"{name}: no-speech probability {p:.2f} (over Whisper's {NO_SPEECH_THRESHOLD}): "
                    "likely silence or noise, its transcript may be a hallucination"
                )
        return [t.strip() for t in out]

    return run


def _named(names: Sequence, clips: Sequence) -> Sequence | None:
    """The batch's names where the clips are the batch's own (not VAD chunks of it): for error messages."""
    return names if len(names) == len(clips) else None


def transcripts(model, processor, options: DecodeOptions, name: str = "the model") -> Timed:
    """(audios, names) -> a timed Transcript of each clip (``geodistill.decoding.timed``: segment times, word
    times with ``options.word_timestamps``, speech only with ``options.vad``) at the resolved audio context;
    ``fallback`` None means on. ``name`` names the model when word timestamps are refused (one line)."""
    if options.word_timestamps:
        check_word_timestamps(model, name)
    context = resolve_audio_context(model, options.audio_context, options.context_margin)
    fallback = True if options.fallback is None else options.fallback
    check_task(model, options.task, name)
    how = Decoding(
        options.language,
        options.beam_size,
        options.max_new_tokens,
        fallback,
        vad=options.vad,
        task=options.task,
    )
    how.batch_size, how.long_form_mode = options.batch_size, options.long_form_mode

    def run(audios: list[np.ndarray], names: Sequence) -> list[Transcript]:
        def featurize(clips: list[np.ndarray]) -> torch.Tensor:
            return features(processor, clips, context, _named(names, clips))

        return timed_transcripts(model, processor, audios, how, featurize, options.word_timestamps)

    return run


def decode_utterances(
    model, processor, utts: Sequence[Utterance], bad: BadSamples, options: DecodeOptions
) -> Decoded:
    """Transcribe ``utts`` in batches, skipping (and recording) unreadable audio
    (``geodistill.decoding.batches.decode_batches``: longest first, input order out).

    ``options.long_form`` decodes clips over 30 s (``geodistill.decoding.longform``; ``long_form_mode``
    "chunked": in batched windows, ``geodistill.decoding.chunked``), ``fallback`` adds the
    temperature fallback, ``warmup`` decodes the first batch once untimed before timing starts.
    """
    check_task(model, options.task)
    context = resolve_audio_context(model, options.audio_context, options.context_margin)
    special = torch.tensor(processor.tokenizer.all_special_ids)
    o = options
    how = Decoding(
        o.language,
        o.beam_size,
        o.max_new_tokens,
        bool(o.fallback),
        dynamic=context.dynamic,
        vad=o.vad,
        timestamps=o.timestamps,
        long_form_mode=o.long_form_mode,
        task=o.task,
    )
    how.batch_size = o.batch_size
    timestamp_begin = Prompts(processor, model).timestamp_begin if o.timestamps else 0

    def run(audios: list[np.ndarray], names: list[str], out: Decoded) -> list[str]:
        ids = decode_audios(
            model,
            processor,
            audios,
            how,
            out.feature,
            out.compute,
            generate_ids,
            featurize=lambda clips: features(processor, clips, context, _named(names, clips)),
        )
        assert out.n_tokens is not None  # None only for a CTC student's decoding
        out.n_tokens += sum(int((~torch.isin(i, special.to(i.device))).sum()) for i in ids)
        out.batch_no_speech = list(how.no_speech)
        if o.timestamps:
            return [timestamped_text(processor, i.tolist(), timestamp_begin) for i in ids]
        return processor.tokenizer.batch_decode([i.tolist() for i in ids], skip_special_tokens=True)

    def warm(audios: list[np.ndarray]) -> None:  # a scratch Decoding: the warm-up counts no statistics
        scratch = replace(how, timestamps=False, stats=Decoding().stats, no_speech=[])
        decode_audios(
            model,
            processor,
            audios,
            scratch,
            Timer(),
            Timer(model.device),
            featurize=lambda clips: features(processor, clips, context),
        )

    out = Decoded(compute=Timer(model.device), feature=Timer())
    decode_batches(model, utts, bad, o.batch_size, run, out, o.long_form, warm=warm if o.warmup else None)
    out.stats = how.stats
    return out


def decode(
    model, processor, utts: Sequence[Utterance], bad: BadSamples, options: DecodeOptions
) -> tuple[Decoded, dict, str]:
    """(decoded, eval.json decoding fields, what compute time covers) of ``utts``."""
    decoded = decode_utterances(model, processor, utts, bad, options)
    context = resolve_audio_context(model, options.audio_context, options.context_margin)
    fields = _fields(model, options, context)
    fields.update(
        long_form=options.long_form,
        long_form_mode=options.long_form_mode if options.long_form else None,
        temperature_fallback=bool(options.fallback),
        vad=options.vad,
    )
    return decoded, fields, TIMING


def _fields(model, options: DecodeOptions, context: AudioContext) -> dict:
    """eval.json fields of a Whisper decoding: beam, token cap, audio context, engine (CT2's sizes)."""
    return {
        "beam_size": options.beam_size,
        "max_new_tokens": options.max_new_tokens or default_max_new_tokens(model),
        "audio_context": context.mode,
        "context_margin": context.margin if context.dynamic else None,
        "dtype_requested": options.dtype,
        "compute_type": (options.compute_type or DEFAULT_COMPUTE_TYPE)
        if options.engine in ("ct2", "whispercpp")
        else None,
        **engine_fields(model),
    }


def describe(result: dict) -> dict[str, str]:
    """eval.md's decoding, audio-context and tokens/s rows of an eval.json dict (old files: full context)."""
    r = result
    if r.get("audio_context", "full") == "full":
        context = "full (30 s)"
    else:
        context = f"dynamic (clip + {r['context_margin']} encoder positions)"
    return {
        "tokens / s": f"{r['tokens_per_second']:.1f}",
        "decoding": f"batch {r['batch_size']}, beam {r['beam_size']}, language {r['language'] or 'default'}"
        + (f", task {r['task']}" if r.get("task") == "translate" else ""),
        "audio context": context,
    }


__all__ = [
    "AudioContext",
    "decode",
    "decode_utterances",
    "describe",
    "get_audio_context",
    "load",
    "texts",
    "transcripts",
]
