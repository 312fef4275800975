"""Test helper: write an HF Whisper model in CTranslate2's ``model.bin`` format (the reverse of ct2.py).

Written independently from the reader, straight from the format description: fused self-attention
q/k/v with a zero key bias, fused cross-attention k/v (zero key bias), an alias for the output
projection, and the small integer scalars CTranslate2 stores next to the weights.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

_CODES = {
    np.dtype("float32"): 0,
    np.dtype("int8"): 1,
    np.dtype("int16"): 2,
    np.dtype("int32"): 3,
    np.dtype("float16"): 4,
}


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def encode_model_bin(
    variables: dict[str, np.ndarray], aliases: dict[str, str], version: int = 6, spec: str = "WhisperSpec"
) -> bytes:
    """Bytes of a CT2 model.bin holding ``variables`` (name -> array) and ``aliases``."""
    out = [struct.pack("<I", version), _string(spec), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, arr in variables.items():
        arr = np.asarray(arr, order="C")  # not ascontiguousarray: it turns 0-d scalars into 1-d
        out += [_string(name), struct.pack("<B", arr.ndim), struct.pack(f"<{arr.ndim}I", *arr.shape)]
        out += [
            struct.pack("<B", _CODES[arr.dtype]),
            struct.pack("<I", arr.nbytes),
            arr.astype(arr.dtype.newbyteorder("<")).tobytes(),
        ]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    return b"".join(out)


def _layer(sd: dict, src: str, dst: str, cross: bool) -> dict[str, torch.Tensor]:
    def lin(name: str) -> dict[str, torch.Tensor]:
        return {"weight": sd[f"{name}.weight"], "bias": sd[f"{name}.bias"]}

    def fused(names: list[str]) -> dict[str, torch.Tensor]:
        weights = [sd[f"{n}.weight"] for n in names]
        biases = [sd.get(f"{n}.bias", torch.zeros(w.shape[0])) for n, w in zip(names, weights, strict=True)]
        return {"weight": torch.cat(weights), "bias": torch.cat(biases)}

    def norm(name: str) -> dict[str, torch.Tensor]:
        return {"gamma": sd[f"{name}.weight"], "beta": sd[f"{name}.bias"]}

    groups = {
        "self_attention/linear_0": fused([f"{src}.self_attn.{p}_proj" for p in "qkv"]),
        "self_attention/linear_1": lin(f"{src}.self_attn.out_proj"),
        "self_attention/layer_norm": norm(f"{src}.self_attn_layer_norm"),
        "ffn/linear_0": lin(f"{src}.fc1"),
        "ffn/linear_1": lin(f"{src}.fc2"),
        "ffn/layer_norm": norm(f"{src}.final_layer_norm"),
    }
    if cross:
        groups |= {
            "attention/linear_0": lin(f"{src}.encoder_attn.q_proj"),
            "attention/linear_1": fused([f"{src}.encoder_attn.{p}_proj" for p in "kv"]),
            "attention/linear_2": lin(f"{src}.encoder_attn.out_proj"),
            "attention/layer_norm": norm(f"{src}.encoder_attn_layer_norm"),
        }
    return {f"{dst}/{g}/{leaf}": t for g, leaves in groups.items() for leaf, t in leaves.items()}


def ct2_variables(model, dtype: np.dtype = np.float16) -> dict[str, np.ndarray]:
    """CT2 variable name -> array for an HF ``WhisperForConditionalGeneration`` (weights in ``dtype``)."""
    cfg, sd = model.config, {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tensors: dict[str, torch.Tensor] = {}
    for side, n in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        for i in range(n):
            tensors |= _layer(sd, f"model.{side}.layers.{i}", f"{side}/layer_{i}", cross=side == "decoder")
        tensors[f"{side}/position_encodings/encodings"] = sd[f"model.{side}.embed_positions.weight"]
        tensors[f"{side}/layer_norm/gamma"] = sd[f"model.{side}.layer_norm.weight"]
        tensors[f"{side}/layer_norm/beta"] = sd[f"model.{side}.layer_norm.bias"]
    for conv in ("conv1", "conv2"):
        tensors[f"encoder/{conv}/weight"] = sd[f"model.encoder.{conv}.weight"]
        tensors[f"encoder/{conv}/bias"] = sd[f"model.encoder.{conv}.bias"]
    tensors["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    variables = {k: t.float().numpy().astype(dtype) for k, t in sorted(tensors.items())}
    scalars = {
        "decoder/activation": np.int8(3),
        "decoder/alibi": np.int8(0),
        "decoder/alignment_heads": np.int16(1),
        "decoder/alignment_layer": np.int16(-1),
        "decoder/num_heads": np.int16(cfg.decoder_attention_heads),
        "decoder/pre_norm": np.int8(1),
        "decoder/scale_embeddings": np.int8(0),
        "decoder/start_from_zero_embedding": np.int8(0),
        "encoder/num_heads": np.int16(cfg.encoder_attention_heads),
    }
    return {**variables, **{k: np.asarray(v) for k, v in scalars.items()}}


TIED = {"decoder/projection/weight": "decoder/embeddings/weight"}


def write_ct2_folder(model, folder: Path, tokenizer_file: Path, config_file: Path, dtype=np.float16) -> Path:
    """A faster-whisper style folder (model.bin, config.json, tokenizer.json) holding ``model``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.bin").write_bytes(encode_model_bin(ct2_variables(model, dtype), TIED))
    config = json.loads(Path(config_file).read_text())
    config["alignment_heads"] = [[model.config.decoder_layers - 1, 0]]  # the real ones name layers we lack
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_bytes(Path(tokenizer_file).read_bytes())
    return folder
