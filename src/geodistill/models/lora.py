"""LoRA adapters (via peft) on chosen Whisper projections, with named presets for the seed's choices.

ΔW = B·A is added to each targeted ``nn.Linear``; the base weight stays frozen. A preset is a list of
regular expressions over module names (``model.decoder.layers.3.encoder_attn.q_proj``); raw regexes
may be given instead of a preset name.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, cast

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from geodistill.config import lora_patterns
from geodistill.errors import GeodistillError

if TYPE_CHECKING:
    from peft import PeftModel


def matching_modules(model: nn.Module, patterns: list[str]) -> list[str]:
    """Names of the ``nn.Linear`` modules whose full name matches one of ``patterns``."""
    regex = re.compile("|".join(f"(?:{p})" for p in patterns))
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and regex.fullmatch(n)]


def add_lora(model: nn.Module, r: int, alpha: int, dropout: float, targets: str | list[str]) -> PeftModel:
    """Wrap ``model`` with peft LoRA adapters on the targeted linears; all base weights become frozen.

    Returns the ``PeftModel``; the adapters live inside the original modules, so calling the
    underlying Whisper (``peft_model.base_model.model``) runs through them too.
    """

    patterns = lora_patterns(targets)
    names = matching_modules(model, patterns)
    if not names:
        raise GeodistillError(f"student.lora.targets: {targets!r} matches no linear layer of the student")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=names, bias="none")
    return cast("PeftModel", get_peft_model(model, config))  # a PeftMixedModel only with mixed=True


def parameter_counts(*modules: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters over ``modules`` (shared tensors counted once)."""
    seen: dict[int, torch.nn.Parameter] = {}
    for module in modules:
        for p in module.parameters():
            seen[id(p)] = p
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return trainable, total
