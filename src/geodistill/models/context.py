"""Dynamic audio context: run Whisper's encoder over a clip's own length plus a margin instead of 30 s.

Whisper pads every clip to 30 s (3000 log-Mel frames -> 1500 encoder positions), so on a CPU the encoder
costs the same for a 2-s clip as for a 30-s one. ``encode`` runs a transformers ``WhisperEncoder`` over
any even number of frames up to 3000: conv1 -> gelu -> conv2 (stride 2) -> gelu, plus the sinusoidal
position table sliced to the length, then the layers and the final layer norm. It reuses the encoder's own
submodules (weights, attention implementation, gradient checkpointing) and patches nothing; at 3000
frames it computes exactly what ``encoder(features)`` does (the tests check it bit for bit).

Sizes: a clip of ``n`` samples covers ``clip_frames(n) = ceil(n / 160)`` Mel frames (10 ms each);
its dynamic context is ``ceil(frames / 2) + margin`` encoder positions (20 ms each), i.e.
``dynamic_frames(frames, margin)`` Mel frames, capped at Whisper's 3000. A batch is padded to its longest
clip's context; padded frames are the log-Mel of zeros, exactly what Whisper sees after a short clip at full
context, and they are not masked (Whisper never masks its input). ``encode`` takes an optional per-frame
``attention_mask`` for callers that want each clip to see only its own context inside a padded batch.

The choice is stored on the model's config (``geodistill_audio_context``, ``geodistill_context_margin``),
so ``save_pretrained`` writes it to config.json and ``load_whisper`` reads it back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from geodistill.errors import GeodistillError

AUDIO_CONTEXTS = ("full", "dynamic")
DEFAULT_MARGIN = 64  # encoder positions (1.28 s) after the clip's last frame; ACFT recommends >= 32
HOP = 160  # samples per log-Mel frame at 16 kHz (10 ms)
MEL_FRAMES = 3000  # Whisper's 30-s window
CONV_STRIDE = 2  # Mel frames per encoder position (conv2's stride)
MASKABLE = ("eager", "sdpa")  # attention implementations that take an additive float mask


@dataclass(frozen=True)
class AudioContext:
    """What the encoder sees: ``full`` (always 30 s) or ``dynamic`` (the clip + ``margin`` positions)."""

    mode: str = "full"
    margin: int = DEFAULT_MARGIN  # encoder positions after the clip (dynamic only)

    def __post_init__(self) -> None:
        if self.mode not in AUDIO_CONTEXTS:
            raise GeodistillError(f"audio_context: must be one of {AUDIO_CONTEXTS}, got {self.mode!r}")
        if not isinstance(self.margin, int) or self.margin < 0:
            raise GeodistillError(f"context_margin: must be an integer >= 0, got {self.margin!r}")

    @property
    def dynamic(self) -> bool:
        return self.mode == "dynamic"


def clip_frames(n_samples: int) -> int:
    """Log-Mel frames whose centres fall inside a clip of ``n_samples`` 16-kHz samples."""
    return math.ceil(n_samples / HOP)


def dynamic_frames(mel_frames: int, margin: int, name: str = "clip") -> int:
    """Mel frames the encoder sees for a clip of ``mel_frames``: 2 * (ceil(frames / 2) + margin), max 3000.

    Raises a GeodistillError naming ``name`` when the clip itself is longer than Whisper's 30-s window.
    """
    if margin < 0:
        raise GeodistillError(f"context_margin: must be >= 0, got {margin}")
    if mel_frames > MEL_FRAMES:
        raise GeodistillError(
            f"{name}: {mel_frames * HOP / 16000:.1f} s is longer than Whisper's 30 s window "
            "(dynamic audio context covers at most 30 s); split it first"
        )
    positions = math.ceil(mel_frames / CONV_STRIDE) + margin
    return min(CONV_STRIDE * positions, MEL_FRAMES)


def jittered_frames(
    mel_frames: int, margin: int, jitter: int, generator: torch.Generator | None = None
) -> int:
    """Training context: ``dynamic_frames`` with the margin moved by a uniform integer in [-j, j] positions.

    j = min(jitter, clip positions // 3) (FUTO's audio-context fine-tuning uses jitter = 64); the context
    never drops below the clip itself nor exceeds 3000 frames. ``jitter`` 0 gives ``dynamic_frames``.
    """
    positions = math.ceil(mel_frames / CONV_STRIDE)
    j = min(jitter, positions // 3)
    shift = int(torch.randint(-j, j + 1, (), generator=generator)) if j > 0 else 0
    return dynamic_frames(mel_frames, max(margin + shift, 0))


def get_audio_context(model: nn.Module) -> AudioContext:
    """The audio context stored on a Whisper model's config (``full`` when it has none)."""
    cfg = model.config
    return AudioContext(
        getattr(cfg, "geodistill_audio_context", "full"),
        getattr(cfg, "geodistill_context_margin", DEFAULT_MARGIN),
    )


def set_audio_context(model: nn.Module, context: AudioContext) -> None:
    """Record ``context`` on the model's config, so ``save_pretrained`` writes it into config.json."""
    model.config.geodistill_audio_context = context.mode
    model.config.geodistill_context_margin = context.margin


def check_override(mode: str | None, margin: int | None) -> None:
    """Raise a one-line GeodistillError for a bad ``--audio-context`` / ``--context-margin`` value."""
    AudioContext(mode or "full", DEFAULT_MARGIN if margin is None else margin)


def resolve_audio_context(
    model: nn.Module, mode: str | None = None, margin: int | None = None
) -> AudioContext:
    """The model's stored context with ``mode`` / ``margin`` overriding it where given (CLI flags)."""
    check_override(mode, margin)
    stored = get_audio_context(model)
    return AudioContext(mode or stored.mode, stored.margin if margin is None else margin)


def _additive_mask(attention_mask: torch.Tensor, encoder: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """(B, frames) 1/0 per Mel frame -> (B, 1, 1, positions) additive mask over encoder positions."""
    impl = encoder.config._attn_implementation
    if impl not in MASKABLE:
        raise GeodistillError(
            f"attention_mask: needs attention implementation {MASKABLE}, model uses {impl!r}"
        )
    keep = attention_mask[:, ::CONV_STRIDE].bool()  # a position is valid when its first Mel frame is
    return torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)[:, None, None, :]


def encode(
    encoder: nn.Module,
    input_features: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    output_hidden_states: bool = False,
) -> BaseModelOutput:
    """A ``WhisperEncoder`` over (B, n_mels, F) features, F even and <= 3000 -> last_hidden_state (B, F/2, D).

    ``attention_mask`` (B, F), 1 on frames to attend to: padded frames are masked as keys (they are still
    computed). ``output_hidden_states`` returns the input of the first layer and every layer's output, the
    last one after the final layer norm, as transformers' encoder does.
    """
    frames = input_features.shape[-1]
    stride = encoder.conv1.stride[0] * encoder.conv2.stride[0]
    longest = stride * encoder.config.max_source_positions
    if frames % stride or not 0 < frames <= longest:
        raise GeodistillError(
            f"input_features: {frames} Mel frames; need a multiple of {stride} up to {longest}"
        )
    embeds = nn.functional.gelu(encoder.conv1(input_features))
    embeds = nn.functional.gelu(encoder.conv2(embeds)).permute(0, 2, 1)
    hidden = embeds + encoder.embed_positions.weight[: embeds.shape[1]]
    hidden = nn.functional.dropout(hidden, p=encoder.dropout, training=encoder.training)
    mask = None if attention_mask is None else _additive_mask(attention_mask, encoder, hidden.dtype)
    mask = None if mask is None else mask.to(hidden.device)
    states = [hidden]
    for layer in encoder.layers:
        if encoder.training and encoder.layerdrop > 0.0 and torch.rand([]) < encoder.layerdrop:
            continue  # LayerDrop, as the stock encoder does
        hidden = layer(hidden, mask)
        states.append(hidden)
    hidden = encoder.layer_norm(hidden)
    if not output_hidden_states:
        return BaseModelOutput(last_hidden_state=hidden)
    return BaseModelOutput(last_hidden_state=hidden, hidden_states=(*states[:-1], hidden))
