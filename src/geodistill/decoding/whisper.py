"""Whisper decoding primitives: log-Mel features in, token ids (and text) out.

Decoding is ``model.generate`` with the KV cache on (each step attends to cached keys/values instead of
re-running the decoder over the whole prefix: O(n) work per step rather than O(n^2) overall), greedy for
``beam_size=1`` and beam search above. In transformers 5, Whisper's ``generate`` returns the generated
text tokens only (the ``<|startoftranscript|>`` prompt is stripped), so decoding needs no prompt slicing.

Audio context (``geodistill.models.context``): features are 3000 frames (30 s) at ``full`` context; at
``dynamic`` context they are padded to the batch's longest clip + margin, and ``generate_ids`` runs the
encoder over those frames itself and hands ``generate`` the ``encoder_outputs`` (the decoder cross-attends
to however many positions it is given). Clips are decoded longest first so each batch's padding stays small.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers.modeling_outputs import BaseModelOutput

from geodistill.decoding import fallback as safeguard
from geodistill.decoding.fallback import fallback_kwargs
from geodistill.errors import GeodistillError
from geodistill.models.context import (
    HOP,
    MEL_FRAMES,
    AudioContext,
    clip_frames,
    dynamic_frames,
    encode,
)

SAMPLE_RATE = 16000  # Hz, Whisper's input rate
CHUNK_SECONDS = 30  # Whisper's window; longer audio would be silently truncated by the feature extractor
WHISPER_WINDOW = f"Whisper's {CHUNK_SECONDS} s window"  # what a clip over 30 s is "longer than"

# Whisper vocabularies: 51864 tokens for English-only checkpoints, 51865 (51866 for large-v3) multilingual
ENGLISH_ONLY_VOCAB = 51864


def is_multilingual(model) -> bool:
    """Whether ``model`` takes language/task tokens (its generation config says so, else its vocabulary)."""
    flag = getattr(model.generation_config, "is_multilingual", None)
    return bool(flag) if flag is not None else model.config.vocab_size > ENGLISH_ONLY_VOCAB


def check_task(model, task: str | None, name: str = "the model") -> None:
    """Refuse in one line ``--task translate`` for an English-only ``model`` (HF, CTranslate2 or ONNX
    Runtime; ``is_multilingual``): it has no task tokens."""
    if task == "translate" and not is_multilingual(model):
        raise GeodistillError(
            f"--task translate: {name} is English-only (.en, no task tokens) and only transcribes; use a "
            "multilingual model"
        )


def default_max_new_tokens(model) -> int:
    """Half the decoder context (224 for Whisper), openai/whisper's ``sample_len``.

    30 s of speech is ~100 tokens, so real transcripts fit; a looping (e.g. half-trained) model stops here
    instead of at the full 448-token context, which halves the worst-case cost of an evaluation.
    """
    return model.config.max_target_positions // 2


# Without it, the dynamic-context encoder pass (``context.encode``, which training runs with autograd on)
# recorded a graph, and every encoder layer's activations stayed alive until ``generate`` returned: 2.2x
# the peak memory of full context at batch 8 (issue 29). tests/evaluate/test_context.py guards it.
@torch.inference_mode()
def generate_ids(
    model,
    input_features: torch.Tensor,
    language: str | None = None,
    beam_size: int = 1,
    max_new_tokens: int | None = None,
    fallback: bool = False,
    no_speech: list[float | None] | None = None,
    timestamps: bool = False,
    task: str | None = None,
) -> torch.Tensor:
    """Token ids (B, T) of the transcripts of ``input_features`` (B, n_mels, F), prompt excluded.

    F = 3000 is Whisper's own path; a shorter F (dynamic audio context) runs ``context.encode`` first.

    ``language`` (e.g. "en") and ``task`` ("transcribe" | "translate"; None = transcribe) go to
    multilingual models only; English-only models reject them (``check_task`` refuses translate first). A
    multilingual model given no language detects it per utterance. ``max_new_tokens`` None means
    ``default_max_new_tokens(model)``.

    ``no_speech``: a list, extended with each clip's ``no_speech_probs`` where they come with this call at
    no extra cost (a shared encoder pass, CTranslate2's own), left as it is otherwise.

    ``timestamps``: Whisper's timestamp tokens among the text (``return_timestamps``; pseudo-labels for
    timestamp-aware training), decoded by ``geodistill.data.tokens.timestamped_text``.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if max_new_tokens is None:
        max_new_tokens = default_max_new_tokens(model)
    kwargs: dict = {
        "num_beams": beam_size,
        "do_sample": False,
        "use_cache": True,
        "max_new_tokens": max_new_tokens,
    }
    if is_multilingual(model):
        kwargs.update(task=task or "transcribe", language=language)
    if timestamps:  # one decoder pass a (short) clip; see decoding/timed.py's _hf_short
        kwargs.update(return_timestamps=True, force_unique_generate_call=True)
    feats = input_features.to(device=model.device, dtype=model.dtype)
    hf = hasattr(model, "get_encoder")  # else CTranslate2 or ONNX Runtime, which take short input themselves
    short = feats.shape[-1] != MEL_FRAMES and hf
    if fallback and (short or not hf):  # transformers' loop re-reads 30-s features; ONNX has none
        return _fallback_ids(model, feats, kwargs, no_speech)
    if fallback:  # Whisper's temperature fallback, transformers' own loop on the 30-s window
        kwargs.update(fallback_kwargs())
    if not hf:  # CTranslate2 hands its no-speech probabilities over with generate; ONNX Runtime has none
        asks = no_speech is not None and hasattr(model, "no_speech_probs")
        return token_ids(model.generate(feats, **kwargs, **({"no_speech": no_speech} if asks else {})))
    # the encoder runs once and its states serve the no-speech probability too, except where generate
    # must see the features (the fallback re-reads them; an assisted model drafts from them)
    share = short or (no_speech is not None and not fallback and isinstance(model, torch.nn.Module))
    if not share:
        return token_ids(model.generate(feats, **kwargs))
    states = _encode(model, feats)
    if no_speech is not None:
        no_speech.extend(no_speech_probs(model, feats, states))
    return token_ids(model.generate(encoder_outputs=states, **kwargs))


def _fallback_ids(model, feats: torch.Tensor, kwargs: dict, no_speech: list | None) -> torch.Tensor:
    """``generate_ids`` with the temperature fallback of ``geodistill.decoding.fallback``: an HF model at
    dynamic context (over its encoder states, computed once), CTranslate2 and ONNX Runtime (over the
    features, which they encode themselves)."""
    eos = _eos(model)
    if hasattr(model, "get_encoder"):
        states = _encode(model, feats)
        probs = no_speech_probs(model, feats, states)

        def attempt(rows: list[int], temperature: float):
            sub = BaseModelOutput(last_hidden_state=states.last_hidden_state[rows])
            return _hf_attempt(model, sub, kwargs, temperature, eos)

    else:
        probs = no_speech_probs(model, feats)

        def attempt(rows: list[int], temperature: float):
            means: list[float] = []
            with safeguard.seeded("cpu"):
                ids = model.generate(feats[rows], **kwargs, temperature=temperature, logprobs=means)
            return list(token_ids(ids)), means

    if no_speech is not None:
        no_speech.extend(probs)
    return safeguard.decode(attempt, feats.shape[0], eos, model.config.vocab_size, probs)


def _eos(model) -> int:
    """<|endoftext|>: an HF model's generation config says it, a model outside torch its tokenizer."""
    if not hasattr(model, "get_encoder"):
        return model.processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    eos = model.generation_config.eos_token_id
    return int(eos[0] if isinstance(eos, list) else eos)


def _hf_attempt(model, states, kwargs: dict, temperature: float, eos: int):
    """(ids, mean log-probabilities) of one fallback attempt of an HF Whisper over encoder ``states``:
    its greedy or beam search at temperature 0, sampling above (seeded)."""
    kwargs = {**kwargs, "return_dict_in_generate": True, "output_scores": True}
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, num_beams=1)
    with safeguard.seeded(model.device):
        out = model.generate(encoder_outputs=states, **kwargs)
    steps = len(out.scores)
    ids = token_ids(out.sequences[:, out.sequences.shape[1] - steps :]).cpu()
    if getattr(out, "sequences_scores", None) is not None:  # beam search: its length-normalised score
        return list(ids), [float(s) for s in out.sequences_scores]
    # the scores are the processed logits, divided by the temperature when sampling: undo that, as
    # transformers does, so the log-probability is the model's own
    scale = temperature if temperature > 0 else 1.0
    logprobs = torch.log_softmax(torch.stack(out.scores, dim=1).float() * scale, dim=-1).cpu()
    return list(ids), [safeguard.mean_logprob(lp, row, eos) for lp, row in zip(logprobs, ids, strict=True)]


def token_ids(ids: torch.Tensor) -> torch.Tensor:
    """``generate``'s ids as integers. With the temperature fallback, transformers gives a clip it skipped as
    silence (no-speech probability over the threshold, mean log-probability under it) an empty float
    tensor, and padding it next to the other clips' ids turns the whole batch into floats (50256.)."""
    return ids.round().long() if ids.is_floating_point() else ids


@torch.no_grad()
def _encode(model, feats: torch.Tensor):
    """The encoder's output for ``feats``: the model's own encoder at 30 s, ``context.encode`` below."""
    if feats.shape[-1] == MEL_FRAMES:
        return model.get_encoder()(feats)
    return encode(model.get_encoder(), feats)


def no_speech_token(model) -> int | None:
    """Whisper's no-speech token (``<|nospeech|>``, ``<|nocaptions|>`` in older vocabularies): the one
    before ``<|notimestamps|>``, as transformers and openai-whisper find it; None when the model has none."""
    no_timestamps = getattr(model.generation_config, "no_timestamps_token_id", None)
    return None if no_timestamps is None else int(no_timestamps) - 1


@torch.inference_mode()
def no_speech_probs(model, input_features: torch.Tensor, states=None) -> list[float | None]:
    """Whisper's no-speech probability of each clip of ``input_features`` (B, n_mels, F): the softmax of the
    no-speech token in the logits at ``<|startoftranscript|>``, before any token is suppressed, as
    openai-whisper computes it (the decoder is causal, so the rest of the prompt does not change it). Above
    ``NO_SPEECH_THRESHOLD`` the clip is likely silence or noise, and its transcript a hallucination.

    ``states``: the encoder's output, when it already ran. A CTranslate2 model answers itself; a model
    without the tokens gives None per clip.
    """
    n = input_features.shape[0]
    if hasattr(model, "no_speech_probs"):  # CTranslate2 (geodistill.decoding.engines.Ct2Whisper)
        return model.no_speech_probs(input_features)
    token = no_speech_token(model)
    sot = getattr(model.generation_config, "decoder_start_token_id", None)
    if token is None or sot is None or not hasattr(model, "get_encoder"):
        return [None] * n
    feats = input_features.to(device=model.device, dtype=model.dtype)
    states = _encode(model, feats) if states is None else states
    prompt = torch.full((n, 1), int(sot), dtype=torch.long, device=model.device)
    logits = model(encoder_outputs=states, decoder_input_ids=prompt).logits[:, 0]
    return [float(p) for p in logits.float().softmax(dim=-1)[:, token]]


def transcribe_batch(
    model,
    processor,
    input_features: torch.Tensor,
    language: str | None = None,
    beam_size: int = 1,
    max_new_tokens: int | None = None,
) -> list[str]:
    """B stripped transcripts of ``input_features`` (B, n_mels, F); see ``generate_ids``."""
    ids = generate_ids(model, input_features, language, beam_size, max_new_tokens)
    return [t.strip() for t in processor.tokenizer.batch_decode(ids, skip_special_tokens=True)]


def batch_frames(
    audios: Sequence[np.ndarray], context: AudioContext | None, names: Sequence | None = None
) -> int:
    """Mel frames a batch is padded to: 3000 at full context, else its longest clip's dynamic context.

    Dynamic: a clip over 30 s raises a GeodistillError naming it (``names[i]``, else "clip i").
    """
    if context is None or not context.dynamic:
        return MEL_FRAMES
    names = names or [f"clip {i}" for i in range(len(audios))]
    return max(
        dynamic_frames(clip_frames(len(a)), context.margin, str(n))
        for a, n in zip(audios, names, strict=True)
    )


def features(
    processor,
    audios: Sequence[np.ndarray],
    context: AudioContext | None = None,
    names: Sequence | None = None,
) -> torch.Tensor:
    """Log-Mel features (B, n_mels, F) of 16 kHz mono float32 clips, F from ``batch_frames``.

    The feature extractor normalises by the maximum over the padded window; the padding is the log-Mel of
    zeros, below any clip's maximum, so a clip's features padded to F frames equal the first F frames of its
    30-s features (tests/evaluate/test_context.py checks it bit for bit).
    """
    frames = batch_frames(audios, context, names)
    return processor.feature_extractor(
        list(audios), sampling_rate=SAMPLE_RATE, max_length=frames * HOP, return_tensors="pt"
    ).input_features


def longest_first(lengths: Sequence[float]) -> list[int]:
    """Indices ordered longest first (ties keep input order): batches of similar length pad less."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])
