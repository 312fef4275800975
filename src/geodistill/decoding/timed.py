"""Timed transcripts (``geodistill.decoding.segments.Transcript``) of clips, by each engine's own timestamps.

- ``hf``: transformers' ``generate`` with ``return_timestamps`` and ``return_segments``: short clips batched
  (at the model's audio context), clips over 30 s by its sequential long-form decoding; word times from
  ``return_token_timestamps`` (cross-attention of the model's alignment heads, dynamic time warping).
- ``ct2``: faster-whisper's ``WhisperModel.transcribe`` on the same CTranslate2 folder, for every clip (it
  pads each window to 30 s, so a dynamic-context student runs at full context here), with its own
  ``word_timestamps`` and ``vad_filter``.
- ``whispercpp``, ``onnx`` and an ``--assistant`` pair give no timestamps here: one segment per clip (per
  speech chunk with ``--vad``).

With ``long_form_mode`` "chunked", clips over 30 s decode by ``geodistill.decoding.chunked`` on both engines
(transformers' pipeline, or its windows and merge around CTranslate2): segment times only.

With ``vad`` on the engines other than ct2, each clip's speech is cut into chunks of at most 30 s
(``geodistill.decoding.vad``), the chunks decode as short clips ``batch_size`` at a time, and their times
are mapped back to the clip's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from geodistill.decoding import vad
from geodistill.decoding.chunked import chunked_segments
from geodistill.decoding.engines import Ct2Whisper
from geodistill.decoding.fallback import fallback_kwargs, seeded
from geodistill.decoding.longform import (
    Decoding,
    decode_audios,
    faster_whisper_transcribe,
    hf_long_generate,
    is_long,
)
from geodistill.decoding.segments import Segment, Transcript, Word, hf_words, joined, transcript
from geodistill.decoding.speed import Timer
from geodistill.decoding.whisper import MEL_FRAMES, SAMPLE_RATE, default_max_new_tokens, is_multilingual
from geodistill.errors import GeodistillError
from geodistill.models.context import encode

Featurize = Callable[[list[np.ndarray]], torch.Tensor]


def gives_timestamps(model) -> bool:
    """The engine predicts segment times here: a transformers Whisper or a CTranslate2 one."""
    return isinstance(model, Ct2Whisper) or hasattr(model, "get_encoder")


def check_word_timestamps(model, name: str) -> None:
    """Refuse ``--word-timestamps`` in one line where the model cannot give them: an engine without token
    timestamps, or a transformers model without usable alignment heads (``generation_config.alignment_heads``:
    (decoder layer, head) pairs; a layer-copy student keeps those of the layers it kept, renumbered, and has
    none when it kept none of them)."""
    if isinstance(model, Ct2Whisper):
        return  # CTranslate2 aligns with the heads stored in model.bin (default: the last half's)
    if not hasattr(model, "get_encoder"):
        raise GeodistillError(
            "--word-timestamps: this engine gives no token timestamps; use --engine hf (a model with "
            "alignment heads) or --engine ct2"
        )
    heads = getattr(model.generation_config, "alignment_heads", None) or []
    layers, n_heads = model.config.decoder_layers, model.config.decoder_attention_heads
    if not heads or any(not (0 <= int(l) < layers and 0 <= int(h) < n_heads) for l, h in heads):
        raise GeodistillError(
            f"--word-timestamps: {name} has no usable alignment heads (generation_config.alignment_heads "
            f"{heads or 'missing'} for {layers} decoder layers of {n_heads} heads); use --engine ct2, or "
            "drop --word-timestamps"
        )


def language_of(model, how: Decoding) -> str | None:
    """The transcript's language: the one asked for, "en" for an English-only model, else None (detected per
    clip by the engine)."""
    if how.language:
        return how.language
    if isinstance(model, Ct2Whisper):
        return None if model.model.is_multilingual else "en"
    return None if is_multilingual(model) else "en"


def _hf_segments(processor, segs: list[dict], words: bool) -> list[Segment]:
    """Segments of transformers' ``generate(return_segments=True)`` output for one clip (times in s)."""
    tok = processor.tokenizer
    text_below = tok.eos_token_id  # Whisper's text tokens come before its special and timestamp tokens
    out = []
    for s in segs:
        tokens = s["tokens"].long().cpu()
        start, end = float(s["start"]), float(s["end"])
        ws = hf_words(tok, tokens, s["token_timestamps"].cpu(), end, text_below) if words else ()
        out.append(Segment(start, end, tok.decode(tokens[tokens < text_below]), ws))
    return out


def _hf_kwargs(model, how: Decoding, words: bool) -> dict:
    kwargs: dict = {
        "num_beams": how.beam_size,
        "return_timestamps": True,
        "return_segments": True,
        "max_new_tokens": how.max_new_tokens or default_max_new_tokens(model),
    }
    if words:
        kwargs["return_token_timestamps"] = True
    if how.fallback:
        kwargs.update(fallback_kwargs())
    if is_multilingual(model):
        kwargs.update(task=how.task or "transcribe", language=how.language)
    return kwargs


@torch.inference_mode()
def _hf_short(model, processor, clips: list[np.ndarray], how: Decoding, words: bool, featurize: Featurize):
    """Segments of each short clip, one batched ``generate`` call at the model's audio context.

    One decoder pass a clip (``force_unique_generate_call``), as ``generate_ids`` decodes a short clip:
    transformers would otherwise go on from a clip's last timestamp when a pass stops early (the token cap, a
    segment left open), over the 30-s window's padding or, given encoder states, over the whole clip again
    (repeated text; in a batch where one clip ended first it failed in its batch reduction)."""
    feats = featurize(clips).to(model.device, model.dtype)
    kwargs = {**_hf_kwargs(model, how, words), "force_unique_generate_call": True}
    if feats.shape[-1] == MEL_FRAMES:
        with seeded(model.device):
            out = model.generate(feats, **kwargs)
        return [_hf_segments(processor, segs, words) for segs in out["segments"]]
    # a dynamic-context student: its encoder over the cut features, as generate_ids does
    states = encode(model.get_encoder(), feats).last_hidden_state
    if not how.fallback:
        out = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states), **kwargs)
        return [_hf_segments(processor, segs, words) for segs in out["segments"]]
    # transformers' fallback re-reads the (short) features of a retried clip but not its encoder states:
    # given both, one clip at a time, it never re-runs the encoder and never mixes two clips' states
    found = []
    for i in range(feats.shape[0]):
        one = BaseModelOutput(last_hidden_state=states[i : i + 1])
        with seeded(model.device):
            out = model.generate(feats[i : i + 1], encoder_outputs=one, **kwargs)
        found.append(_hf_segments(processor, out["segments"][0], words))
    return found


def _hf(model, processor, clips: list[np.ndarray], how: Decoding, words: bool, featurize: Featurize):
    """Segments of each clip by transformers: short ones batched, long ones by long-form generate."""
    result: list[list[Segment]] = [[] for _ in clips]
    short = [i for i, c in enumerate(clips) if not is_long(c)]
    if short:
        found = _hf_short(model, processor, [clips[i] for i in short], how, words, featurize)
        for i, segs in zip(short, found, strict=True):
            result[i] = segs
    long = [i for i, c in enumerate(clips) if is_long(c)]
    if long and how.long_form_mode == "chunked":
        how.stats["long_clips"] += len(long)
        found = chunked_segments(model, processor, [clips[i] for i in long], how)
        for i, segs in zip(long, found, strict=True):
            result[i] = segs
        return result
    for i, clip in enumerate(clips):
        if is_long(clip):
            how.stats["long_clips"] += 1
            out = hf_long_generate(model, processor, clip, how, segments=True, words=words)
            result[i] = _hf_segments(processor, out["segments"][0], words)
    return result


def _ct2_clips(
    model: Ct2Whisper, clips: Sequence[np.ndarray], how: Decoding, words: bool
) -> list[Transcript]:
    """Each clip by ``_ct2``, except those over 30 s with ``how.long_form_mode`` "chunked": those by batched
    chunked decoding (``geodistill.decoding.chunked``), their windows batched together."""
    chunked = [i for i, c in enumerate(clips) if how.long_form_mode == "chunked" and is_long(c)]
    out = {
        i: _ct2(model, np.asarray(c, np.float32), how, words) for i, c in enumerate(clips) if i not in chunked
    }
    if chunked:
        how.stats["long_clips"] += len(chunked)
        found = chunked_segments(model, model.processor, [clips[i] for i in chunked], how)
        for i, segs in zip(chunked, found, strict=True):
            out[i] = transcript(segs, clips[i].size / SAMPLE_RATE, language_of(model, how))
    return [out[i] for i in range(len(clips))]


def _ct2(model: Ct2Whisper, clip: np.ndarray, how: Decoding, words: bool) -> Transcript:
    """One clip by faster-whisper's ``transcribe`` (its own VAD filter with ``how.vad``)."""
    found, info = faster_whisper_transcribe(model, clip, how, words)
    segs = [
        Segment(
            s.start,
            s.end,
            s.text,
            tuple(Word(w.start, w.end, w.word, float(w.probability)) for w in (s.words or ())),
        )
        for s in found
    ]
    return transcript(segs, clip.size / SAMPLE_RATE, info.language)


def _untimed(
    model, processor, clips: list[np.ndarray], how: Decoding, featurize: Featurize
) -> list[list[Segment]]:
    """One segment per clip, for the engines without timestamps (its text by ``decode_audios``)."""
    ids = decode_audios(
        model, processor, clips, replace(how, vad=False), Timer(), Timer(), featurize=featurize
    )
    texts = processor.tokenizer.batch_decode([i.tolist() for i in ids], skip_special_tokens=True)
    return [[Segment(0.0, c.size / SAMPLE_RATE, t)] for c, t in zip(clips, texts, strict=True)]


def timed_transcripts(
    model,
    processor,
    clips: Sequence[np.ndarray],
    how: Decoding,
    featurize: Featurize,
    words: bool = False,
) -> list[Transcript]:
    """A Transcript of each 16-kHz clip (module doc), in order. ``featurize(clips)``: the short clips'
    log-Mel features at the model's audio context. ``words``: word times (check ``check_word_timestamps``
    first); ``how.vad``: decode only the speech; ``how.batch_size``: VAD chunks decoded together."""
    language = language_of(model, how)
    if isinstance(model, Ct2Whisper):
        return _ct2_clips(model, clips, how, words)

    def segments_of(group: list[np.ndarray]) -> list[list[Segment]]:
        if hasattr(model, "get_encoder"):
            return _hf(model, processor, group, how, words, featurize)
        return _untimed(model, processor, group, how, featurize)

    if not how.vad:
        return [
            transcript(segs, c.size / SAMPLE_RATE, language)
            for c, segs in zip(clips, segments_of(list(clips)), strict=True)
        ]
    chunked = [vad.split(c) for c in clips]
    owners = [(i, chunk) for i, chunks in enumerate(chunked) for chunk in chunks]
    parts: list[list[Segment]] = []
    for k in range(0, len(owners), how.batch_size):
        group = owners[k : k + how.batch_size]
        parts += segments_of([chunk.audio(clips[i]) for i, chunk in group])
    out = []
    for i, clip in enumerate(clips):
        mine = [(chunk, segs) for (owner, chunk), segs in zip(owners, parts, strict=True) if owner == i]
        duration = clip.size / SAMPLE_RATE
        pieces = [transcript(segs, chunk.samples / SAMPLE_RATE, language) for chunk, segs in mine]
        out.append(joined(pieces, [chunk.to_original for chunk, _ in mine], duration, language))
    return out
