"""The slice of a torch Whisper model's interface that geodistill's decoding and ``evaluate`` read, for a
model that runs outside torch (CTranslate2, ONNX Runtime, whisper.cpp): no parameters, eval mode, features
made on the CPU in float32. Each engine's wrapper subclasses it and adds ``generate`` or ``transcribe``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Self

import torch


class OutsideTorch:
    training = False
    device = torch.device("cpu")  # where the features are made and the ids returned
    dtype = torch.float32  # what the features are made in

    def eval(self) -> Self:
        return self

    def train(self, mode: bool = True) -> Self:
        return self

    def parameters(self) -> Iterator:
        """No torch parameters: ``engine_fields`` reads the counts off the engine's own files."""
        return iter(())

    def state_dict(self) -> dict:
        return {}
