"""What the distillation loop needs from a teacher, and the online (frozen model) provider of it.

Any provider is a callable ``teacher(batch) -> TeacherOutputs``; the loop never looks behind it, so a
cache of stored outputs (``geodistill.teacher.cache``) swaps in without touching the loop.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
from transformers import WhisperForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

# {decoder layer: (keys, values)}, each (B, heads, T_enc, head_dim): a layer's cross-attention projections
# of the encoder states (its ``encoder_attn.k_proj`` / ``v_proj`` outputs, split into heads).
CrossKV = dict[int, tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TeacherOutputs:
    logits: torch.Tensor | None = None  # (B, L, V) full-vocabulary logits, or None when only top-k exists
    topk_values: torch.Tensor | None = None  # (B, L, k) largest raw logits
    topk_indices: torch.Tensor | None = None  # (B, L, k) their token ids
    logsumexp: torch.Tensor | None = None  # (B, L) log-sum-exp of the full raw logits / the temperature below
    decoder_hidden: torch.Tensor | None = None  # (B, L, D_t) last decoder layer, after its layer norm
    encoder_hidden: torch.Tensor | None = None  # (B, T_t, D_t) last encoder layer, after its layer norm
    cross_kv: CrossKV | None = None  # by *teacher* decoder layer: its cross-attention keys/values
    logsumexp_temperature: float = 1.0  # logsumexp = logsumexp(z_full / T) at this T (exact top-k KL at T)

    def to(self, device: torch.device) -> TeacherOutputs:
        """The same outputs on ``device`` (a teacher kept on the CPU feeds a student on the GPU)."""
        return type(self)(**{k: _moved(v, device) for k, v in self.__dict__.items()})

    def at(self, positions: torch.Tensor) -> TeacherOutputs:
        """The per-token fields at ``positions`` ((B, L) bool) only, packed into (1, N, ...) in row order;
        encoder states and cross-attention keys/values are per utterance and stay as they are."""
        packed = {
            k: v[positions][None] if k in TOKEN_FIELDS and v is not None else v
            for k, v in self.__dict__.items()
        }
        return type(self)(**packed)


TOKEN_FIELDS = ("logits", "topk_values", "topk_indices", "logsumexp", "decoder_hidden")  # (B, L, ...)


def _moved(value, device: torch.device):
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {k: tuple(t.to(device, non_blocking=True) for t in kv) for k, kv in value.items()}
    return value


@dataclass
class ModelStates:
    logits: torch.Tensor  # (B, L, V)
    decoder_hidden: torch.Tensor  # (B, L, D)
    encoder_hidden: torch.Tensor  # (B, T, D)
    cross_kv: CrossKV  # the layers asked for with ``keep_cross_kv`` (else empty)


def forward_states(
    model: WhisperForConditionalGeneration,
    decoder_input_ids: torch.Tensor,
    input_features: torch.Tensor | None = None,
    encoder_hidden: torch.Tensor | None = None,
    cross_kv: CrossKV | None = None,
    keep_cross_kv: tuple[int, ...] = (),
    positions: torch.Tensor | None = None,
) -> ModelStates:
    """Teacher-forced forward returning logits and the last encoder/decoder states.

    Give ``encoder_hidden`` (B, T, D) to skip the encoder (a frozen encoder shared with the teacher,
    or states read from a cache); otherwise ``input_features`` (B, n_mels, 3000) runs it.
    ``cross_kv`` ({layer: (keys, values)}) stands in for those decoder layers' cross-attention
    projections of the encoder states (they are not computed); valid only where the projections are
    frozen and equal to the ones that made the tensors (``train.setup.shared_cross_kv`` checks it).
    ``keep_cross_kv``: decoder layers whose cross-attention keys/values to return (no extra compute).
    ``positions`` ((B, L) bool): logits and decoder states only there, packed into (1, N, ...) in row
    order, so the V-wide LM head runs on the tokens a loss reads and not on prompt or padding.
    Both go through transformers' ``EncoderDecoderCache``: a prefilled cross-attention layer is reused.
    """
    whisper = model.model
    if encoder_hidden is None:
        encoder_hidden = whisper.encoder(input_features).last_hidden_state
    cache = None
    if cross_kv or keep_cross_kv:
        given = [(cross_kv or {}).get(i, (None, None)) for i in range(whisper.config.decoder_layers)]
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache(given))
    dec = whisper.decoder(
        input_ids=decoder_input_ids,
        encoder_hidden_states=encoder_hidden,
        use_cache=cache is not None,
        **{_cache_keyword(type(whisper.decoder)): cache},
    )
    kept = {}
    if cache is not None:
        layers = cache.cross_attention_cache.layers
        kept = {i: (layers[i].keys, layers[i].values) for i in keep_cross_kv}
    hidden = dec.last_hidden_state
    if positions is not None:
        hidden = hidden[positions][None]
    return ModelStates(
        logits=model.proj_out(hidden), decoder_hidden=hidden, encoder_hidden=encoder_hidden, cross_kv=kept
    )


@functools.cache
def _cache_keyword(decoder_class: type) -> str:
    """The decoder's name for its KV cache argument: ``cache`` in recent transformers 5.x, earlier
    ``past_key_values`` (an unknown keyword would be swallowed by ``**kwargs`` and the cache ignored)."""
    return "cache" if "cache" in inspect.signature(decoder_class.forward).parameters else "past_key_values"


class OnlineTeacher:
    """A frozen teacher run at every step (no grad, eval mode, on its own device and dtype).

    ``cross_kv_layers``: teacher decoder layers whose cross-attention keys/values to hand on (a copy
    student with those layers' projections frozen reuses them instead of recomputing them).
    """

    def __init__(self, model: WhisperForConditionalGeneration, cross_kv_layers: tuple[int, ...] = ()):
        self.model = model.eval().requires_grad_(False)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.cross_kv_layers = tuple(cross_kv_layers)

    @torch.no_grad()
    def __call__(self, batch: dict) -> TeacherOutputs:
        feats = batch["input_features"].to(self.device, self.dtype)
        dec = batch["decoder_input_ids"].to(self.device)
        out = forward_states(self.model, dec, input_features=feats, keep_cross_kv=self.cross_kv_layers)
        return TeacherOutputs(
            logits=out.logits,
            decoder_hidden=out.decoder_hidden,
            encoder_hidden=out.encoder_hidden,
            cross_kv=out.cross_kv or None,
        )
