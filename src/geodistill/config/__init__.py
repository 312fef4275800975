"""Typed run configuration: YAML presets + dotted ``key=value`` overrides + one validation pass.

A config is a tree of dataclasses. ``load_config("layer-drop-cpu", ["train.lr=1e-4"])`` reads the
shipped preset (or a YAML file, or a mapping), applies overrides (values parsed as YAML, so ``1e-4``,
``true``, ``[0, 3]`` work), and ``validate`` reports *every* problem in one ``ConfigError`` before any
compute starts.

Modules: ``schema`` (the dataclasses), ``load`` (YAML, overrides, dict conversion), ``presets`` (the
shipped ``geodistill/presets/*.yaml``, found by name), ``checks`` (``validate``), ``lora`` (LoRA target
presets), ``errors`` (``ConfigError``). Import from here.
"""

from geodistill.config.checks import validate
from geodistill.config.errors import ConfigError, config_error
from geodistill.config.load import from_dict, load_config, merge, parse_overrides, read_yaml, to_dict
from geodistill.config.lora import LORA_PRESETS, lora_patterns
from geodistill.config.presets import config_source, description, preset_file, preset_names
from geodistill.config.schema import (
    TRACKERS,
    AblateConfig,
    AmpMode,
    AudioContext,
    AugmentConfig,
    Config,
    CTCConfig,
    DataConfig,
    EncoderAlign,
    HiddenLayers,
    HiddenLoss,
    HiddenOn,
    LoraConfig,
    LossConfig,
    StudentConfig,
    StudentInit,
    TaidMode,
    TrainConfig,
    TuneConfig,
    ctc_vocab,
    tracker_names,
)

__all__ = [
    "LORA_PRESETS",
    "TRACKERS",
    "AblateConfig",
    "AmpMode",
    "AudioContext",
    "CTCConfig",
    "AugmentConfig",
    "ctc_vocab",
    "Config",
    "ConfigError",
    "DataConfig",
    "EncoderAlign",
    "HiddenLayers",
    "HiddenLoss",
    "HiddenOn",
    "LoraConfig",
    "LossConfig",
    "StudentConfig",
    "StudentInit",
    "TaidMode",
    "TrainConfig",
    "TuneConfig",
    "config_error",
    "config_source",
    "description",
    "from_dict",
    "load_config",
    "lora_patterns",
    "merge",
    "parse_overrides",
    "preset_file",
    "preset_names",
    "read_yaml",
    "to_dict",
    "tracker_names",
    "validate",
]
