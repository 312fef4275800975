"""LoRA injection presets: named sets of module-name regexes for ``student.lora.targets``."""

from __future__ import annotations

import re

from geodistill.errors import GeodistillError

_DEC = r"model\.decoder\.layers\.\d+"
# The seed's ten injection choices (decoder side, where a copied student is trained), then common
# combinations. "cross" = encoder_attn (queries from text, keys/values from audio).
LORA_PRESETS: dict[str, list[str]] = {
    "decoder-cross-q": [rf"{_DEC}\.encoder_attn\.q_proj"],
    "decoder-cross-v": [rf"{_DEC}\.encoder_attn\.v_proj"],
    "decoder-self-q": [rf"{_DEC}\.self_attn\.q_proj"],
    "decoder-self-v": [rf"{_DEC}\.self_attn\.v_proj"],
    "decoder-cross-qv": [rf"{_DEC}\.encoder_attn\.(q_proj|v_proj)"],
    "decoder-self-qv": [rf"{_DEC}\.self_attn\.(q_proj|v_proj)"],
    "decoder-cross-qkv": [rf"{_DEC}\.encoder_attn\.(q_proj|k_proj|v_proj)"],
    "decoder-self-qkv": [rf"{_DEC}\.self_attn\.(q_proj|k_proj|v_proj)"],
    "decoder-fc2": [rf"{_DEC}\.fc2"],
    "decoder-cross-qkvo": [rf"{_DEC}\.encoder_attn\.(q_proj|k_proj|v_proj|out_proj)"],
    "decoder-self-qkvo": [rf"{_DEC}\.self_attn\.(q_proj|k_proj|v_proj|out_proj)"],
    "decoder-fc1-fc2": [rf"{_DEC}\.(fc1|fc2)"],
    "decoder-attn-qv": [rf"{_DEC}\.(self_attn|encoder_attn)\.(q_proj|v_proj)"],
    "decoder-self-ffn": [rf"{_DEC}\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"],
    "decoder-all-linear": [rf"{_DEC}\.((self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)"],
    # Every decoder linear that acts on text states, i.e. all but the cross-attention k/v (which act on the
    # audio): those stay frozen, so their keys/values are constants the teacher can hand over or cache.
    "decoder-text-side": [
        rf"{_DEC}\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|encoder_attn\.(q_proj|out_proj)|fc1|fc2)"
    ],
}


def lora_patterns(targets: str | list[str]) -> list[str]:
    """Resolve a preset name or raw regexes into regexes; reject unknown names early."""
    if isinstance(targets, str):
        if targets in LORA_PRESETS:
            return LORA_PRESETS[targets]
        if re.fullmatch(r"[\w-]+", targets):
            raise GeodistillError(
                f"student.lora.targets: unknown preset {targets!r} (presets: {', '.join(LORA_PRESETS)}; "
                "or give module-name regexes)"
            )
        return [targets]
    return list(targets)
