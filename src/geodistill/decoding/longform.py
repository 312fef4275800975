"""Audio longer than Whisper's 30 s window, and the decoding safeguards users expect.

Long clips are decoded one at a time, with each engine's own sequential long-form algorithm:
- HF: ``generate`` on the unpadded log-Mel features (``truncation=False``) with timestamps, which slides
  the 30 s window segment by segment as openai-whisper does;
- CT2: faster-whisper's ``WhisperModel.transcribe`` on the same CTranslate2 folder (it always pads each
  window to 30 s).
With ``long_form_mode="chunked"`` they are cut into fixed windows decoded ``batch_size`` at a time instead
(``geodistill.decoding.chunked``). Clips of up to 30 s keep the batched short-form path. ``fallback=True``
adds Whisper's temperature fallback (re-decode at a higher temperature when the compression ratio or mean
log-probability says the output is a loop or garbage), as openai-whisper and faster-whisper do: the engine's
own on 30-s windows, ``geodistill.decoding.fallback`` at dynamic context and in ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from geodistill.decoding import vad
from geodistill.decoding.chunked import chunked_segments
from geodistill.decoding.engines import Ct2Whisper
from geodistill.decoding.fallback import FALLBACK_TEMPERATURES, fallback_kwargs
from geodistill.decoding.speed import Timer
from geodistill.decoding.whisper import (
    default_max_new_tokens,
    features,
    generate_ids,
    no_speech_probs,
    token_ids,
)
from geodistill.decoding.whispercpp import WhisperCppModel

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 30 * SAMPLE_RATE


@dataclass
class Decoding:
    """How to decode: language, task, beam, token cap (per window), and the safeguards."""

    language: str | None = None
    beam_size: int = 1
    max_new_tokens: int | None = None
    fallback: bool = False  # temperature fallback on loops/garbage
    dynamic: bool = False  # dynamic audio context: short clips keep it, the fallback included
    vad: bool = False  # decode only the speech voice-activity detection finds (geodistill.decoding.vad)
    batch_size: int = 8  # VAD chunks (or chunked windows) decoded together
    long_form_mode: str = "sequential"  # clips over 30 s: options.LONG_FORM_MODES
    timestamps: bool = False  # short clips: keep Whisper's timestamp tokens among the text ids
    task: str | None = None  # "transcribe" | "translate" (multilingual models); None = transcribe
    # long clips decoded, short clips at the token cap, --long-form chunked's windows and their batches
    stats: dict = field(
        default_factory=lambda: {
            "long_clips": 0,
            "hit_token_cap": 0,
            "chunked_windows": 0,
            "chunked_batches": 0,
        }
    )
    # each clip's no-speech probability in the last ``decode_audios`` call (None: the model has none)
    no_speech: list[float | None] = field(default_factory=list)


def is_long(audio: np.ndarray) -> bool:
    return audio.size > WINDOW_SAMPLES


def hf_long_generate(
    model, processor, audio: np.ndarray, how: Decoding, segments: bool = False, words: bool = False
) -> dict:
    """transformers' sequential long-form ``generate`` of one clip over 30 s, with timestamps: a dict with
    ``sequences`` (1, T) and, when ``segments``, ``segments`` (one list of dicts: start, end, tokens, and
    token_timestamps when ``words``, which needs the model's alignment heads)."""
    inputs = processor.feature_extractor(
        [audio],
        sampling_rate=SAMPLE_RATE,
        truncation=False,
        padding="longest",
        return_attention_mask=True,
        return_tensors="pt",
    )

    kwargs: dict = {
        "num_beams": how.beam_size,
        "return_timestamps": True,
        "condition_on_prev_tokens": False,
        "max_new_tokens": how.max_new_tokens or default_max_new_tokens(model),  # per 30 s window
    }
    if segments:
        kwargs["return_segments"] = True
    if words:
        kwargs["return_token_timestamps"] = True
    if how.fallback:
        kwargs.update(fallback_kwargs())
    if getattr(model.generation_config, "is_multilingual", False):
        kwargs.update(task=how.task or "transcribe", language=how.language)
    feats = inputs.input_features.to(model.device, model.dtype)
    out = model.generate(feats, attention_mask=inputs.attention_mask.to(model.device), **kwargs)
    return dict(out) if isinstance(out, dict) else {"sequences": out}


def _hf_long_ids(model, processor, audio: np.ndarray, how: Decoding) -> torch.Tensor:
    """Token ids (1, T) of one long clip by HF's sequential long-form generate (timestamps dropped)."""
    ids = token_ids(hf_long_generate(model, processor, audio, how)["sequences"])
    # a window skipped as silence can leave float ids (``token_ids``)
    first_timestamp = processor.tokenizer.convert_tokens_to_ids("<|0.00|>")
    keep = ids[0][ids[0] < first_timestamp]
    return keep.reshape(1, -1)


def faster_whisper_transcribe(model, audio: np.ndarray, how: Decoding, words: bool = False):
    """(segments, info) of one clip by faster-whisper's ``transcribe`` on a CTranslate2 model's folder, with
    ``how``'s language, task, beam, fallback and VAD filter (``words``: word timestamps)."""
    return model.faster_whisper().transcribe(
        audio,
        language=how.language if model.model.is_multilingual else None,
        task=how.task or "transcribe",
        beam_size=how.beam_size,
        temperature=list(FALLBACK_TEMPERATURES) if how.fallback else 0.0,
        condition_on_previous_text=False,
        without_timestamps=False,
        word_timestamps=words,
        vad_filter=how.vad,
    )


def _ct2_long_ids(model, audio: np.ndarray, how: Decoding) -> torch.Tensor:
    """Token ids (1, T) of one long clip by faster-whisper's own long-form transcription."""
    segments = faster_whisper_transcribe(model, audio, how)[0]
    ids = [t for s in segments for t in s.tokens if t < model.timestamp_begin]
    return torch.tensor(ids, dtype=torch.long).reshape(1, -1)


def long_ids(model, processor, audio: np.ndarray, how: Decoding) -> torch.Tensor:
    """Token ids (1, T) of a clip longer than 30 s (text tokens only), by the engine's long-form decoding
    (any clip on ct2 when faster-whisper does its temperature fallback or VAD)."""

    how.stats["long_clips"] += int(is_long(audio))
    if isinstance(model, Ct2Whisper):
        return _ct2_long_ids(model, audio, how)
    return _hf_long_ids(model, processor, audio, how)


def chunked_ids(model, processor, audios: Sequence[np.ndarray], how: Decoding) -> list[torch.Tensor]:
    """Text token ids (1-D) of each clip over 30 s by batched chunked decoding (``decoding.chunked``): the
    merged windows' text, tokenised again."""
    how.stats["long_clips"] += len(audios)
    found = chunked_segments(model, processor, audios, how)
    texts = ["".join(s.text for s in segs) for segs in found]
    tokenize = processor.tokenizer
    return [torch.tensor(tokenize(t, add_special_tokens=False).input_ids, dtype=torch.long) for t in texts]


def decode_audios(
    model,
    processor,
    audios: Sequence[np.ndarray],
    how: Decoding,
    feature: Timer,
    compute: Timer,
    generate: Callable | None = None,
    featurize: Callable | None = None,
) -> list[torch.Tensor]:
    """Ids (1-D, text tokens and padding) of each clip (``_decode_clips``). With ``how.vad`` (engines other
    than ct2, whose faster-whisper filters itself), each clip's speech is cut into chunks of at most 30 s
    (``geodistill.decoding.vad``; silero's time counts as compute), the chunks are decoded as short clips,
    ``how.batch_size`` at a time, and each clip's ids are its chunks' ids end to end (none: no speech found).
    A clip's no-speech probability is then its first chunk's."""
    if not how.vad or isinstance(model, Ct2Whisper):
        return _decode_clips(model, processor, audios, how, feature, compute, generate, featurize)
    with compute:
        chunked = [vad.split(a) for a in audios]
    owners = [i for i, chunks in enumerate(chunked) for _ in chunks]
    parts = [c.audio(a) for a, chunks in zip(audios, chunked, strict=True) for c in chunks]
    ids: list[torch.Tensor] = []
    probs: list[float | None] = []
    for k in range(0, len(parts), how.batch_size):
        group = parts[k : k + how.batch_size]
        ids += _decode_clips(model, processor, group, how, feature, compute, generate, featurize)
        probs += how.no_speech
    out = [torch.zeros(0, dtype=torch.long) for _ in audios]
    first: list[float | None] = [None] * len(audios)
    for k, (owner, row) in enumerate(zip(owners, ids, strict=True)):
        if k == 0 or owners[k - 1] != owner:  # the clip's first chunk
            first[owner] = probs[k]
        out[owner] = torch.cat([out[owner], row.reshape(-1).to(out[owner].device)])
    how.no_speech = first
    return out


def _decode_clips(
    model,
    processor,
    audios: Sequence[np.ndarray],
    how: Decoding,
    feature: Timer,
    compute: Timer,
    generate: Callable | None = None,
    featurize: Callable | None = None,
) -> list[torch.Tensor]:
    """Ids (1-D, text tokens and padding) of each clip: short ones batched, long ones one by one.

    Feature extraction of the short batch is timed by ``feature``, decoding by ``compute``; a long clip's
    feature extraction happens inside its generate call and counts as compute. Counts a short clip that
    reached ``max_new_tokens`` in ``how.stats["hit_token_cap"]``. ``generate`` replaces
    ``transcribe.generate_ids`` for the short batch (same signature); ``featurize(audios)`` replaces
    ``features(processor, audios)`` (e.g. to cut the features to an audio context).

    Sets ``how.no_speech`` to each clip's no-speech probability (``whisper.no_speech_probs``; a long clip's
    is its first 30-s window's). It comes with the short batch's generate call where that costs nothing,
    else from one more pass of the encoder and one decoder step, left out of both timers.
    """

    if isinstance(model, WhisperCppModel):  # whisper.cpp decodes audio itself, any length, batch 1
        with compute:
            texts = model.transcribe(list(audios))
        how.no_speech = [None] * len(audios)  # whisper.cpp reports none
        tokenizer = processor.tokenizer
        return [
            torch.tensor(tokenizer(t, add_special_tokens=False).input_ids, dtype=torch.long) for t in texts
        ]
    out: list[torch.Tensor | None] = [None] * len(audios)
    probs: list[float | None] = [None] * len(audios)
    # CT2's fallback on 30-s windows, and its VAD, are faster-whisper's; at dynamic context the fallback
    # is generate_ids' own
    via_long = ((how.fallback and not how.dynamic) or how.vad) and isinstance(model, Ct2Whisper)
    short = [] if via_long else [i for i, a in enumerate(audios) if not is_long(a)]
    if short:
        with feature:
            clips = [audios[i] for i in short]
            feats = featurize(clips) if featurize is not None else features(processor, clips)
        found: list[float | None] = []
        stamps = {"timestamps": True} if how.timestamps else {}  # asked of generate only when wanted
        with compute:
            ids = (generate or generate_ids)(
                model,
                feats,
                how.language,
                how.beam_size,
                how.max_new_tokens,
                how.fallback,
                no_speech=found,
                task=how.task,
                **stamps,
            )
        if len(found) != len(short):  # not free with this generate call (temperature fallback)
            found = no_speech_probs(model, feats)
        for i, p in zip(short, found, strict=True):
            probs[i] = p
        cap = how.max_new_tokens or default_max_new_tokens(model)
        eos = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        for row, i in zip(ids, short, strict=True):
            out[i] = row
            how.stats["hit_token_cap"] += int(row.numel() >= cap and bool((row != eos).all()))
    rest = [i for i in range(len(audios)) if i not in short]
    chunked = [i for i in rest if how.long_form_mode == "chunked" and is_long(audios[i])]
    if chunked:
        with compute:
            found = chunked_ids(model, processor, [audios[i] for i in chunked], how)
        for i, row in zip(chunked, found, strict=True):
            out[i] = row
    for i in rest:
        if i in chunked:
            continue
        with compute:
            out[i] = long_ids(model, processor, audios[i], how)[0]
    if rest:  # their first window, at full context
        first = features(processor, [audios[i][:WINDOW_SAMPLES] for i in rest])
        for i, p in zip(rest, no_speech_probs(model, first), strict=True):
            probs[i] = p
    how.no_speech = probs
    return out  # type: ignore[return-value]
