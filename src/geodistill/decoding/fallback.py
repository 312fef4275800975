"""Whisper's temperature fallback where no library applies it: at dynamic audio context, and in ONNX Runtime.

openai-whisper decodes each clip greedily (or by beam search) first. When the result looks like a loop (a
high compression ratio) or garbage (a low mean log-probability), it decodes that clip again by sampling at
the next temperature, 0.2 up to 1.0, and keeps the first result that passes (the last one when none does).
A clip whose no-speech probability is over its threshold is not retried; when its log-probability is low
too, it is taken for silence and left empty.

transformers' ``generate`` and faster-whisper apply this rule to 30-s windows only: both re-read the
padded 30-s features, which would cost a dynamic-context student its speed-up. ``decode`` applies the same
rule to whatever an engine decodes, given one ``Attempt`` function per engine, so a short-context student
keeps both its speed and its safeguard. whisper.cpp has its own fallback and needs none of this.

The compression ratio is transformers' token measure (the zlib ratio of the token ids' bytes); transformers
documents 1.35 as its threshold, the counterpart of openai-whisper's 2.4 on text. Sampling is seeded per
call in torch and ONNX Runtime, so a clip decodes the same way every time there; CTranslate2 samples with
the random generator of its worker threads, which no call can seed.
"""

from __future__ import annotations

import contextlib
import math
import zlib
from collections.abc import Callable, Iterator, Sequence

import torch

# openai-whisper's defaults (its compression-ratio threshold, 2.4, is on text)
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
LOGPROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
TOKEN_COMPRESSION_RATIO_THRESHOLD = 1.35  # on token ids: transformers' counterpart of 2.4 on text
SEED = 0  # sampling seed of every fallback attempt

# Attempt(rows, temperature) -> (ids, mean log-probabilities): the clips ``rows`` of the batch decoded at
# ``temperature`` (0: the engine's greedy or beam search; above: sampling), one 1-D id tensor (text
# tokens, then <|endoftext|> and padding) and one mean log-probability per row.
Attempt = Callable[[list[int], float], tuple[list[torch.Tensor], list[float]]]


def text_tokens(ids: torch.Tensor, eos: int) -> torch.Tensor:
    """``ids`` up to (not including) the first ``eos``."""
    ends = (ids == eos).nonzero()
    return ids[: int(ends[0])] if len(ends) else ids


def compression_ratio(tokens: torch.Tensor, vocab_size: int) -> float:
    """Raw over zlib-compressed length of the tokens' bytes (transformers' measure; 0 tokens: 0.0)."""
    if tokens.numel() == 0:
        return 0.0
    width = int(math.log2(vocab_size) / 8) + 1
    raw = b"".join(int(t).to_bytes(width, "little") for t in tokens.tolist())
    return len(raw) / len(zlib.compress(raw))


def mean_logprob(logprobs: torch.Tensor, tokens: torch.Tensor, eos: int) -> float:
    """Mean log-probability of a generated row (T,) given its step log-probabilities (T, V): the tokens up
    to and including the first ``eos`` count, as openai-whisper counts them."""
    n = len(text_tokens(tokens, eos)) + 1 if bool((tokens == eos).any()) else len(tokens)
    if n == 0:
        return 0.0
    picked = logprobs[:n].float().gather(-1, tokens[:n, None].long()).squeeze(-1)
    return float(picked.sum()) / n


def needs_retry(tokens: torch.Tensor, logprob: float, no_speech: float | None, vocab_size: int) -> bool:
    """Whether a decoded clip looks like a loop or garbage, and is not silence."""
    if no_speech is not None and no_speech > NO_SPEECH_THRESHOLD:
        return False
    ratio = compression_ratio(tokens, vocab_size)
    return ratio > TOKEN_COMPRESSION_RATIO_THRESHOLD or logprob < LOGPROB_THRESHOLD


def decode(
    attempt: Attempt,
    batch: int,
    eos: int,
    vocab_size: int,
    no_speech: Sequence[float | None] | None = None,
    stats: dict | None = None,
) -> torch.Tensor:
    """Token ids (B, T) of ``batch`` clips, padded with ``eos``, by the temperature fallback (module doc).

    ``stats``: counts, when given, the clips retried (``fallback_retries``) and left empty as silence
    (``fallback_silent``).
    """
    probs = list(no_speech) if no_speech is not None else [None] * batch
    found: list[torch.Tensor | None] = [None] * batch
    logprobs = [0.0] * batch
    rows = list(range(batch))
    for temperature in FALLBACK_TEMPERATURES:
        if not rows:
            break
        ids, means = attempt(rows, temperature)
        retry = []
        for row, tokens, mean in zip(rows, ids, means, strict=True):
            found[row], logprobs[row] = tokens, mean
            if needs_retry(text_tokens(tokens, eos), mean, probs[row], vocab_size):
                retry.append(row)
        if stats is not None and temperature == FALLBACK_TEMPERATURES[0]:
            stats["fallback_retries"] = stats.get("fallback_retries", 0) + len(retry)
        rows = retry
    out = []
    for row in range(batch):
        tokens = text_tokens(found[row], eos)  # type: ignore[arg-type]
        silent = probs[row] is not None and probs[row] > NO_SPEECH_THRESHOLD  # type: ignore[operator]
        if silent and logprobs[row] < LOGPROB_THRESHOLD:
            tokens = tokens[:0]
            if stats is not None:
                stats["fallback_silent"] = stats.get("fallback_silent", 0) + 1
        out.append(tokens)
    width = max((len(t) for t in out), default=0) + 1  # every row ends in <|endoftext|>
    padded = torch.full((batch, width), eos, dtype=torch.long)
    for row, tokens in enumerate(out):
        padded[row, : len(tokens)] = tokens
    return padded


@contextlib.contextmanager
def seeded(device: torch.device | str) -> Iterator[None]:
    """Torch's RNG (CPU, and the model's CUDA device) starts from ``SEED`` inside, and is restored after: a
    fallback attempt samples the same way every call and leaves the caller's RNG alone."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(SEED)
        yield


def fallback_kwargs() -> dict:
    """transformers ``generate`` arguments of the temperature fallback on 30-s windows (its own loop)."""
    return {
        "temperature": FALLBACK_TEMPERATURES,
        "compression_ratio_threshold": TOKEN_COMPRESSION_RATIO_THRESHOLD,
        "logprob_threshold": LOGPROB_THRESHOLD,
        "no_speech_threshold": NO_SPEECH_THRESHOLD,
        "do_sample": False,
    }
