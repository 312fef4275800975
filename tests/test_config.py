"""Config: presets load, dotted overrides apply with YAML types, every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from geodistill.config import ConfigError, load_config, parse_overrides, to_dict

PRESETS = Path(__file__).resolve().parents[1] / "src" / "geodistill" / "presets"


@pytest.mark.parametrize(
    "name",
    [
        "layer-drop-cpu",
        "dynamic-cpu",
        "fast-cpu",
        "thesis",
        "distil-large-v2",
        "ctc-cpu",
        "distil-large-v3",
        "distil-large-v3-turbo",
    ],
)
def test_presets_load_and_validate(name):
    cfg = load_config(name)
    assert cfg.student.init in ("copy", "pretrained", "ctc")
    assert load_config(PRESETS / f"{name}.yaml") == cfg == load_config(f"{name}.yaml")


def test_thesis_preset_holds_the_seed_numbers():
    cfg = load_config("thesis")
    assert cfg.teacher == "openai/whisper-large-v2" and cfg.student.from_ == "openai/whisper-small"
    assert (cfg.train.lr, cfg.train.warmup_steps, cfg.train.max_steps) == (2.6e-4, 1000, 10000)
    assert (cfg.loss.kl_weight, cfg.loss.kl_warmup_steps, cfg.loss.geo_weight) == (0.020584, 1000, 0.969909)
    assert (cfg.loss.temperature, cfg.train.clip, cfg.train.amp) == (2.0, 1.0, "fp16")
    assert to_dict(cfg)["student"]["from"] == "openai/whisper-small"


def test_distil_preset_shares_the_encoder_and_both_kept_layers_cross_attention_keys_values():
    from transformers import WhisperConfig

    from geodistill.students.seq2seq.sharing import cross_kv_plan

    cfg = load_config("distil-large-v2")
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

    cfg = load_config(name)
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
    cfg = load_config("layer-drop-cpu", ["train.max_steps=7", "student.lora.r=4", "train.lr=1e-4"])
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


def test_a_preset_is_found_by_name_and_an_unknown_name_is_one_line():
    from geodistill.config import description, preset_names

    assert {"dynamic-cpu", "layer-drop-cpu", "ctc-cpu", "thesis", "distil-large-v2"} <= set(preset_names())
    for name in preset_names():
        text = description(name)
        assert 20 < len(text) < 110 and "\n" not in text, (name, text)
    with pytest.raises(ConfigError) as err:
        load_config("dynamic-gpu")
    line = str(err.value)
    assert "\n" not in line and line.startswith("dynamic-gpu: no such config file or preset")
    assert "dynamic-cpu" in line  # the shipped names, so the typo is obvious
    with pytest.raises(ConfigError, match="no such preset"):
        from geodistill.config import preset_file

        preset_file("nope")


def test_a_file_wins_over_a_preset_of_the_same_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("dynamic-cpu").write_text("train: {max_steps: 3}\n")
    assert load_config("dynamic-cpu").train.max_steps == 3
    assert load_config("dynamic-cpu.yaml").train.max_steps == 300  # no such file here: the preset


def test_a_mapping_config_and_mapping_overrides():
    base = {"teacher": "tiny.en", "train": {"max_steps": 5, "lr": 1e-4}}
    cfg = load_config(base, {"train.max_steps": 2, "student.decoder_layers": [0, 3]})
    assert (cfg.train.max_steps, cfg.train.lr, cfg.student.decoder_layers) == (2, 1e-4, [0, 3])
    assert base == {"teacher": "tiny.en", "train": {"max_steps": 5, "lr": 1e-4}}  # not modified
    with pytest.raises(ConfigError, match=r"train\.lr was set to a value"):
        load_config(None, {"train.lr": 1.0, "train.lr.x": 2})
