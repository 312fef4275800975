"""Whisper models: loading (HF, CTranslate2, embedded, run folders), students, LoRA, projector."""

from geodistill.models.loading import cache_dir, load_whisper, resolve_device

__all__ = ["cache_dir", "load_whisper", "resolve_device"]
