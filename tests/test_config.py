"""Config: presets load, dotted overrides apply with YAML types, every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodistill.config import ConfigError, load_config, parse_overrides, to_dict

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    "name",
    [
        "layer-drop-cpu.yaml",
        "dynamic-cpu.yaml",
        "thesis.yaml",
        "distil-large-v2.yaml",
        "distil-large-v3.yaml",
        "distil-large-v3-turbo.yaml",
    ],
)
def test_presets_load_and_validate(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.student.init in ("copy", "pretrained")


def test_thesis_preset_holds_the_seed_numbers():
    cfg = load_config(CONFIGS / "thesis.yaml")
    assert cfg.teacher == "openai/whisper-large-v2" and cfg.student.from_ == "openai/whisper-small"
    assert (cfg.train.lr, cfg.train.warmup_steps, cfg.train.max_steps) == (2.6e-4, 1000, 10000)
    assert (cfg.loss.kl_weight, cfg.loss.kl_warmup_steps, cfg.loss.geo_weight) == (0.020584, 1000, 0.969909)
    assert (cfg.loss.temperature, cfg.train.clip, cfg.train.amp) == (2.0, 1.0, "fp16")
    assert to_dict(cfg)["student"]["from"] == "openai/whisper-small"


def test_distil_preset_shares_the_encoder_and_both_kept_layers_cross_attention_keys_values():
    from transformers import WhisperConfig

    from geodistill.students.seq2seq.sharing import cross_kv_plan

    cfg = load_config(CONFIGS / "distil-large-v2.yaml")
    large_v2 = WhisperConfig(encoder_layers=32, decoder_layers=32, d_model=1280)
    assert cross_kv_plan(cfg, large_v2) == {0: 0, 1: 31}
    assert cfg.teacher_cache and not cfg.teacher_cache_cross_kv


@pytest.mark.parametrize(
    ("name", "teacher", "decoder_layers", "kept"),
    [
        ("distil-large-v3.yaml", "openai/whisper-large-v3", 32, {0: 0, 1: 31}),
        ("distil-large-v3-turbo.yaml", "openai/whisper-large-v3-turbo", 4, {0: 0, 1: 3}),
    ],
)
def test_distil_large_v3_presets_hold_distil_whispers_recipe(name, teacher, decoder_layers, kept):
    from transformers import WhisperConfig

    from geodistill.models.student import spaced_layers
    from geodistill.students.seq2seq.sharing import cross_kv_plan

    cfg = load_config(CONFIGS / name)
    assert cfg.teacher == teacher and cfg.student.init == "copy" and cfg.student.freeze_encoder
    assert cfg.student.decoder_layers == 2 and cfg.student.lora.r == 0  # 2 decoder layers, trained in full
    assert (cfg.loss.ce_weight, cfg.loss.kl_weight, cfg.loss.hidden_loss) == (1.0, 1.0, "none")
    assert cfg.data.timestamp_probability == 0.2 and cfg.data.task == "transcribe"
    assert cfg.data.train.endswith("pseudo.jsonl")  # the teacher's WER-filtered, timestamped pseudo-labels
    large = WhisperConfig(encoder_layers=32, decoder_layers=decoder_layers, d_model=1280, vocab_size=51866)
    assert dict(enumerate(spaced_layers(decoder_layers, cfg.student.decoder_layers))) == kept  # first, last
    assert cross_kv_plan(cfg, large) == {}  # the cross-attention trains too: no teacher K/V to take


def test_overrides_are_parsed_as_yaml():
    tree = parse_overrides(["train.lr=1e-4", "student.decoder_layers=[0, 3]", "loss.taid=adaptive"])
    assert tree == {
        "train": {"lr": "1e-4"},
        "student": {"decoder_layers": [0, 3]},
        "loss": {"taid": "adaptive"},
    }
    cfg = load_config(
        CONFIGS / "layer-drop-cpu.yaml", ["train.max_steps=7", "student.lora.r=4", "train.lr=1e-4"]
    )
    assert cfg.train.max_steps == 7 and cfg.student.lora.r == 4 and cfg.train.lr == 1e-4


def test_every_problem_is_reported_in_one_error():
    with pytest.raises(ConfigError) as err:
        load_config(
            None, ["train.lr=-1", "loss.hidden_on=middle", "train.batch_size=0", "data.max_duration=45"]
        )
    text = str(err.value)
    for field in ("train: need lr > 0", "loss.hidden_on", "train.batch_size", "data.max_duration"):
        assert field in text


def test_unknown_keys_and_wrong_types_are_named():
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown key"):
        load_config(None, ["train.learning_rate=1e-3"])
    with pytest.raises(ConfigError, match=r"train\.max_steps: expected"):
        load_config(None, ["train.max_steps=lots"])
    with pytest.raises(ConfigError, match="override 'train.lr': expected key=value"):
        load_config(None, ["train.lr"])


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
