"""Write an HF Whisper folder as ONNX graphs, for ``export --format onnx`` and ``--engine onnx``.

Three graphs, fp32, traced by torch's TorchScript exporter (``torch.onnx.export(dynamo=False)``: it needs
no ``onnxscript`` and keeps every traced shape symbolic), from small wrapper modules over the model's own
submodules:

- ``encoder.onnx``: ``input_features`` (batch, n_mels, frames) -> ``last_hidden_state`` (batch, frames/2,
  d_model) for any even ``frames`` up to 3000 (``geodistill.models.context.encode``: the positional table is
  sliced to the length), so a dynamic-context student keeps its short input.
- ``decoder.onnx`` (the first step): ``input_ids`` (batch, tokens), ``encoder_hidden_states`` (batch,
  positions, d_model) -> ``logits`` (batch, tokens, vocab), ``present.{i}.decoder.key|value`` (batch,
  heads, tokens, head_dim) and the cross-attention ``present.{i}.encoder.key|value`` (batch, heads,
  positions, head_dim), computed once from the encoder output.
- ``decoder_with_past.onnx`` (every later step): ``input_ids`` (batch, tokens), ``past_key_values.{i}.
  decoder.key|value`` (batch, heads, past, head_dim), ``past_key_values.{i}.encoder.key|value`` -> ``logits``
  and ``present.{i}.decoder.key|value`` (batch, heads, past + tokens, head_dim): the self-attention cache
  grows by one step per call.

Tensor names follow Hugging Face optimum's Whisper export. Next to them: config.json,
generation_config.json, the processor files and, for a dynamic-context student, ``geodistill_context.json``.
A trimmed-vocabulary student's head is traced into the decoder graphs (its K kept rows, the full-size
``logits`` -inf elsewhere; ``vocab_kept.json`` beside).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import torch
from torch import nn
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from geodistill.models.context import encode
from geodistill.models.ct2_convert import record_context
from geodistill.models.trim import KEPT_FILE, load_trimmed
from geodistill.optional import require
from geodistill.outdir import replace_folder

ENCODER, DECODER, DECODER_WITH_PAST = "encoder.onnx", "decoder.onnx", "decoder_with_past.onnx"
GRAPHS = (ENCODER, DECODER, DECODER_WITH_PAST)
OPSET = 17  # LayerNormalization is a single op from opset 17
COPY_FILES = ("config.json", "generation_config.json")


def is_onnx_folder(folder: Path) -> bool:
    """A folder written by ``write_onnx``: the three graphs and config.json."""
    return all((folder / name).is_file() for name in (*GRAPHS, "config.json"))


def kv_names(layers: int, prefix: str, part: str) -> list[str]:
    """``{prefix}.{i}.{part}.key``, ``...value`` for every decoder layer (part: decoder | encoder)."""
    return [f"{prefix}.{i}.{part}.{kv}" for i in range(layers) for kv in ("key", "value")]


class _Encoder(nn.Module):
    """The encoder over any even frame count (``context.encode``)."""

    def __init__(self, model: WhisperForConditionalGeneration):
        super().__init__()
        self.encoder = model.get_encoder()

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return encode(self.encoder, input_features).last_hidden_state


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(batch, length, d_model) -> (batch, heads, length, head_dim)."""
    return x.reshape(x.shape[0], x.shape[1], heads, -1).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax attention of (already scaled) heads -> (batch, length, d_model)."""
    weights = q @ k.transpose(-1, -2)
    if mask is not None:
        weights = weights + mask
    out = weights.softmax(dim=-1) @ v
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


class _Decoder(nn.Module):
    """The decoder with explicit key/value tensors: the first step (``with_past`` False: computes the
    cross-attention K/V from ``encoder_hidden_states``) or a later one (takes them, and the self-attention
    cache, as inputs). Same operations as transformers' ``WhisperDecoder`` with a cache."""

    def __init__(self, model: WhisperForConditionalGeneration, with_past: bool):
        super().__init__()
        self.decoder = model.get_decoder()
        self.proj_out = model.proj_out
        self.heads = model.config.decoder_attention_heads
        self.with_past = with_past

    def forward(self, input_ids: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dec, n = self.decoder, len(self.decoder.layers)
        if self.with_past:
            past, cross = tensors[: 2 * n], tensors[2 * n :]
            start = past[0].shape[2]
        else:
            (encoder_hidden,) = tensors
            start = 0
        length = input_ids.shape[1]
        hidden = dec.embed_tokens(input_ids) * dec.embed_scale
        hidden = hidden + dec.embed_positions.weight[start : start + length]
        # causal mask of the new tokens over (cache + new tokens)
        query_pos = torch.arange(length, device=input_ids.device) + start
        key_pos = torch.arange(start + length, device=input_ids.device)
        mask = torch.zeros(length, start + length, dtype=hidden.dtype, device=hidden.device)
        mask = mask.masked_fill(key_pos[None, :] > query_pos[:, None], torch.finfo(hidden.dtype).min)
        presents: list[torch.Tensor] = []
        crosses: list[torch.Tensor] = []
        for i, layer in enumerate(dec.layers):
            attn = layer.self_attn
            residual = hidden
            h = layer.self_attn_layer_norm(hidden)
            q = _heads(attn.q_proj(h) * attn.scaling, self.heads)
            k, v = _heads(attn.k_proj(h), self.heads), _heads(attn.v_proj(h), self.heads)
            if self.with_past:
                k, v = torch.cat([past[2 * i], k], dim=2), torch.cat([past[2 * i + 1], v], dim=2)
            presents += [k, v]
            hidden = residual + attn.out_proj(_attend(q, k, v, mask))

            cross_attn = layer.encoder_attn
            residual = hidden
            h = layer.encoder_attn_layer_norm(hidden)
            q = _heads(cross_attn.q_proj(h) * cross_attn.scaling, self.heads)
            if self.with_past:
                ck, cv = cross[2 * i], cross[2 * i + 1]
            else:
                ck = _heads(cross_attn.k_proj(encoder_hidden), self.heads)
                cv = _heads(cross_attn.v_proj(encoder_hidden), self.heads)
                crosses += [ck, cv]
            hidden = residual + cross_attn.out_proj(_attend(q, ck, cv, None))

            residual = hidden
            h = layer.final_layer_norm(hidden)
            hidden = residual + layer.fc2(layer.activation_fn(layer.fc1(h)))
        logits = self.proj_out(dec.layer_norm(hidden))
        return (logits, *presents, *crosses)


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict):
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer notices
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=False,
            dynamo=False,
        )


def write_onnx(hf_dir: Path, out: Path) -> Path:
    """The three ONNX graphs of the HF Whisper folder ``hf_dir`` and its config/processor files, in ``out``
    (an existing folder; ``export_onnx`` is the atomic variant)."""
    require("onnx", "onnx", "exporting to ONNX")
    model = WhisperForConditionalGeneration.from_pretrained(hf_dir, local_files_only=True).float().eval()
    load_trimmed(model, hf_dir)  # a trimmed student: its head (K kept rows, -inf elsewhere) in the graphs
    cfg = model.config
    n, heads = cfg.decoder_layers, cfg.decoder_attention_heads
    head_dim = cfg.d_model // heads
    batch, frames, tokens, past = 2, 2 * 37, 3, 5  # example shapes; every axis below stays symbolic
    positions = frames // 2
    feats = torch.randn(batch, cfg.num_mel_bins, frames)
    ids = torch.full((batch, tokens), cfg.decoder_start_token_id, dtype=torch.long)
    hidden = torch.randn(batch, positions, cfg.d_model)
    self_kv = [torch.randn(batch, heads, past, head_dim) for _ in range(2 * n)]
    cross_kv = [torch.randn(batch, heads, positions, head_dim) for _ in range(2 * n)]
    past_in, cross_in = kv_names(n, "past_key_values", "decoder"), kv_names(n, "past_key_values", "encoder")
    self_out, cross_out = kv_names(n, "present", "decoder"), kv_names(n, "present", "encoder")
    b = {0: "batch"}
    with torch.no_grad():
        _export(
            _Encoder(model),
            (feats,),
            out / ENCODER,
            ["input_features"],
            ["last_hidden_state"],
            {"input_features": {0: "batch", 2: "frames"}, "last_hidden_state": {0: "batch", 1: "positions"}},
        )
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "encoder_hidden_states": {0: "batch", 1: "positions"}}
        axes["logits"] = {0: "batch", 1: "tokens"}
        axes |= {name: {**b, 2: "tokens"} for name in self_out}
        axes |= {name: {**b, 2: "positions"} for name in cross_out}
        _export(
            _Decoder(model, with_past=False),
            (ids, hidden),
            out / DECODER,
            ["input_ids", "encoder_hidden_states"],
            ["logits", *self_out, *cross_out],
            axes,
        )
        axes = {"input_ids": {0: "batch", 1: "tokens"}, "logits": {0: "batch", 1: "tokens"}}
        axes |= {name: {**b, 2: "past"} for name in past_in}
        axes |= {name: {**b, 2: "positions"} for name in cross_in}
        axes |= {name: {**b, 2: "past_plus_tokens"} for name in self_out}
        _export(
            _Decoder(model, with_past=True),
            (ids[:, :1], *self_kv, *cross_kv),
            out / DECODER_WITH_PAST,
            ["input_ids", *past_in, *cross_in],
            ["logits", *self_out],
            axes,
        )
    _copy_metadata(hf_dir, out)
    return out


def _copy_metadata(hf_dir: Path, out: Path) -> None:
    """config.json, generation_config.json, the processor files and a dynamic-context student's rule."""
    for name in COPY_FILES:
        if (hf_dir / name).is_file():
            shutil.copyfile(hf_dir / name, out / name)
    processor = WhisperProcessor.from_pretrained(hf_dir, local_files_only=True)
    processor.save_pretrained(out)
    processor.feature_extractor.save_pretrained(out)  # preprocessor_config.json, for older readers
    record_context(hf_dir, out)
    if (hf_dir / KEPT_FILE).is_file():
        shutil.copyfile(hf_dir / KEPT_FILE, out / KEPT_FILE)


def export_onnx(hf_dir: Path, out: Path, readme: str | None = None) -> Path:
    """``write_onnx`` into a temporary folder renamed into ``out`` at the end (with ``README.md`` when
    ``readme`` is given): a crash leaves no half-written export."""

    def write(tmp: Path) -> None:
        write_onnx(hf_dir, tmp)
        if readme is not None:
            (tmp / "README.md").write_text(readme, encoding="utf-8")

    replace_folder(out, write, "the ONNX export")
    return out
