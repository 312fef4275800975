"""Teacher-forced forward of a Whisper model: logits and last encoder/decoder states in one call.

Used by the online teacher, by the seq2seq student and by the report; given encoder states or
cross-attention keys/values stand in for the parts they replace (no recomputation).
"""

from __future__ import annotations

import functools
import inspect

import torch
from transformers import WhisperForConditionalGeneration
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from geodistill.contracts import CrossKV, ModelStates


def forward_states(
    model: WhisperForConditionalGeneration,
    decoder_input_ids: torch.Tensor,
    input_features: torch.Tensor | None = None,
    encoder_hidden: torch.Tensor | None = None,
    cross_kv: CrossKV | None = None,
    keep_cross_kv: tuple[int, ...] = (),
    positions: torch.Tensor | None = None,
    every_layer: bool = False,
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
    ``every_layer``: also return each decoder layer's output ({layer: (B, L, D)}, packed like the logits;
    the last one after the final layer norm, as ``decoder_hidden``).
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
        output_hidden_states=every_layer,
        **{_cache_keyword(type(whisper.decoder)): cache},
    )
    kept = {}
    if cache is not None:
        layers = cache.cross_attention_cache.layers
        kept = {i: (layers[i].keys, layers[i].values) for i in keep_cross_kv}
    hidden = dec.last_hidden_state
    layers = dict(enumerate(dec.hidden_states[1:])) if every_layer else None  # [0] is the embeddings
    if positions is not None:
        hidden = hidden[positions][None]
        layers = None if layers is None else {i: h[positions][None] for i, h in layers.items()}
    return ModelStates(
        logits=model.proj_out(hidden),
        decoder_hidden=hidden,
        encoder_hidden=encoder_hidden,
        cross_kv=kept,
        decoder_layers=layers,
    )


@functools.cache
def _cache_keyword(decoder_class: type) -> str:
    """The decoder's name for its KV cache argument: ``cache`` in recent transformers 5.x, earlier
    ``past_key_values`` (an unknown keyword would be swallowed by ``**kwargs`` and the cache ignored)."""
    return "cache" if "cache" in inspect.signature(decoder_class.forward).parameters else "past_key_values"
