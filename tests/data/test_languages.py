"""Per-utterance prompts: each row its own language and task, timestamped labels at a seeded share, and
one-line errors naming the row or key for a language or task the model cannot take."""

from __future__ import annotations

import json

import pytest
import torch

from geodistill.config import load_config
from geodistill.contracts import IGNORE_INDEX
from geodistill.data import SpeechDataset, WhisperCollator, load_spec
from geodistill.data.dataset import check_utterances, timestamp_draw
from geodistill.data.sets import run_prompts
from geodistill.data.specs import Utterance
from geodistill.data.tokens import Prompts, language_code, plain_text, timestamped_text, timestamped_tokens
from geodistill.errors import DataError
from tests.conftest import multilingual_generation_config
from tests.data.conftest import tone

SOT, EN, DE, FR, TRANSLATE, TRANSCRIBE, NTS, TS0 = 50258, 50259, 50261, 50265, 50358, 50359, 50363, 50364


def _manifest(tmp_path, rows: list[dict]):
    import soundfile as sf

    for row in rows:
        sf.write(tmp_path / row["audio_filepath"], tone(1.2), 16000)
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def prompts(base_tokenizer):
    return Prompts(base_tokenizer, multilingual_generation_config(), language="en", task="transcribe")


def test_language_codes_from_codes_names_tokens_and_locales():
    assert [language_code(x) for x in ("de", "German", "<|de|>", "pt-BR", "zh_CN", "Cantonese")] == [
        "de",
        "de",
        "de",
        "pt",
        "zh",
        "yue",
    ]
    assert language_code("klingon") is None


def test_a_mixed_language_batch_builds_each_rows_own_prompt(
    tmp_path, base_tokenizer, prompts, tiny_processor
):
    path = _manifest(
        tmp_path,
        [
            {"audio_filepath": "a.wav", "text": "Guten Tag", "language": "German"},
            {"audio_filepath": "b.wav", "text": "Bonjour à tous", "language": "fr", "task": "translate"},
            {"audio_filepath": "c.wav", "text": "Hello"},  # no language: data.language (en)
        ],
    )
    utts = load_spec(path)
    assert [(u.language, u.task) for u in utts] == [("de", None), ("fr", "translate"), (None, None)]
    processor = type(tiny_processor)(
        feature_extractor=tiny_processor.feature_extractor, tokenizer=base_tokenizer
    )
    ds = SpeechDataset(utts, processor, prompts=prompts)
    batch = WhisperCollator(None, 50257)([ds[i] for i in range(3)])
    expected = [[SOT, DE, TRANSCRIBE, NTS], [SOT, FR, TRANSLATE, NTS], [SOT, EN, TRANSCRIBE, NTS]]
    for row, (prompt, utt) in enumerate(zip(expected, utts, strict=True)):
        text = base_tokenizer(" " + utt.text, add_special_tokens=False).input_ids
        n = len(prompt) + len(text)
        assert batch["decoder_input_ids"][row, :n].tolist() == prompt + text  # its own prompt, then its text
        assert (batch["decoder_input_ids"][row, n:] == 50257).all()  # right-padded
        labels = batch["labels"][row].tolist()
        assert labels[: len(prompt) - 1] == [IGNORE_INDEX] * 3  # the prompt is never a target
        assert labels[len(prompt) - 1 : n] == text + [50257]  # the last prompt token predicts the text
        assert all(t == IGNORE_INDEX for t in labels[n:])


def test_translate_prompts_per_run_and_per_row(base_tokenizer):
    run = Prompts(base_tokenizer, multilingual_generation_config(), language="de", task="translate")
    assert run.ids() == [SOT, DE, TRANSLATE, NTS]
    assert run.ids("fr", "transcribe") == [SOT, FR, TRANSCRIBE, NTS]  # a row's own task wins
    assert run.ids(timestamps=True) == [SOT, DE, TRANSLATE]  # no <|notimestamps|>


def test_timestamp_prompts_and_labels(base_tokenizer, prompts, tiny_processor):
    stamped = "<|0.00|> Hello there.<|1.20|><|1.20|> Bye<|2.00|>"
    ids = timestamped_tokens(base_tokenizer, stamped, prompts.timestamp_begin)
    hello = base_tokenizer(" Hello there.", add_special_tokens=False).input_ids
    bye = base_tokenizer(" Bye", add_special_tokens=False).input_ids
    assert prompts.timestamp_begin == TS0
    assert ids == [TS0, *hello, TS0 + 60, TS0 + 60, *bye, TS0 + 100, 50257]  # 1.20 s = 60 steps of 0.02
    assert timestamped_text(base_tokenizer, ids, TS0) == stamped  # and back
    assert plain_text(stamped) == "Hello there. Bye"
    processor = type(tiny_processor)(
        feature_extractor=tiny_processor.feature_extractor, tokenizer=base_tokenizer
    )
    utts = [Utterance(f"u{i}", "x", "Hello there. Bye", text_timestamps=stamped) for i in range(40)]
    always = SpeechDataset(utts, processor, prompts=prompts, timestamp_probability=1.0, seed=3)
    prompt, labels = always.tokens(utts[0], utts[0].text)
    assert prompt == [SOT, EN, TRANSCRIBE] and labels == ids  # timestamped: no <|notimestamps|>
    never = SpeechDataset(utts, processor, prompts=prompts, timestamp_probability=0.0)
    assert never.tokens(utts[0], utts[0].text)[0] == [SOT, EN, TRANSCRIBE, NTS]
    # a share: fixed per (seed, id), so a resumed run and a cache see the same labels; another seed differs
    some = SpeechDataset(utts, processor, prompts=prompts, timestamp_probability=0.3, seed=3)
    chosen = [u.id for u in utts if some.timestamps(u)]
    assert chosen == [u.id for u in utts if timestamp_draw(3, u.id) < 0.3] and 4 <= len(chosen) <= 20
    assert chosen != [u.id for u in utts if timestamp_draw(4, u.id) < 0.3]
    plain = Utterance("p", "x", "no times here")  # rows without timestamped text never draw them
    assert not some.timestamps(plain)
    batch = WhisperCollator(None, 50257)(
        [
            {
                "id": "a",
                "labels": labels,
                "prompt": prompt,
                "audio_seconds": 1.0,
                "input_features": torch.zeros(1),
            }
        ]
    )
    assert batch["labels"][0].tolist()[:3] == [IGNORE_INDEX, IGNORE_INDEX, TS0]  # <|0.00|> first target


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Hello<|1.00|>", "start and end"),
        ("<|0.00|> a<|0.01|>", "multiple of 0.02"),
        ("<|2.00|> a<|1.00|>", "must not go back"),
        ("<|0.00|> a<|31.00|>", "multiple of 0.02 s in 0.00..30.00"),
    ],
)
def test_bad_timestamped_text_gives_the_reason(base_tokenizer, text, reason):
    with pytest.raises(DataError, match=reason):
        timestamped_tokens(base_tokenizer, text, TS0)


def test_a_bad_language_or_task_names_its_row(tmp_path, tiny_processor, tiny_whisper, prompts):
    path = _manifest(
        tmp_path,
        [
            {"audio_filepath": "a.wav", "text": "x"},
            {"audio_filepath": "b.wav", "text": "y", "language": "klingon"},
        ],
    )
    with pytest.raises(DataError, match=rf"^{path}:2: language 'klingon' is not a Whisper language"):
        load_spec(path)
    path = _manifest(tmp_path, [{"audio_filepath": "a.wav", "text": "x", "task": "summarise"}])
    with pytest.raises(
        DataError, match=rf"^{path}:1: task 'summarise': expected 'transcribe' or 'translate'"
    ):
        load_spec(path)
    # an English-only teacher cannot take German rows, nor translate
    path = _manifest(
        tmp_path,
        [
            {"audio_filepath": "a.wav", "text": "x", "language": "en"},
            {"audio_filepath": "b.wav", "text": "y", "language": "de"},
        ],
    )
    english = Prompts(tiny_processor, tiny_whisper, name="tiny.en")
    with pytest.raises(DataError, match=rf"^{path}:2: language 'de': tiny.en is English-only"):
        check_utterances(english, load_spec(path))
    with pytest.raises(DataError, match=r"task 'translate': tiny.en is English-only"):
        check_utterances(english, [Utterance("u", "x", "y", task="translate", where="m.jsonl:7")])
    # a multilingual model with no language for a row, and none as the default
    no_default = Prompts(prompts.tok, multilingual_generation_config())
    with pytest.raises(DataError, match=r"^m.jsonl:3: no language: a multilingual Whisper needs a language"):
        check_utterances(no_default, [Utterance("u", "x", "y", where="m.jsonl:3")])


def test_bad_run_keys_are_named(tiny_processor, tiny_whisper):
    cfg = load_config(None, ["data.language=klingon"])
    with pytest.raises(DataError, match=r"^data.language: 'klingon' is not a Whisper language"):
        run_prompts(cfg, tiny_processor, tiny_whisper)
    cfg = load_config(None, ["data.language=de"])
    with pytest.raises(
        DataError, match=r"^data.language / data.task: language 'de': tiny.en is English-only"
    ):
        run_prompts(cfg, tiny_processor, tiny_whisper)
    from geodistill.config import ConfigError

    with pytest.raises(ConfigError, match="data.task"):
        load_config(None, ["data.task=summarise"])
    with pytest.raises(ConfigError, match=r"data.timestamp_probability: must be in \[0, 1\]"):
        load_config(None, ["data.timestamp_probability=1.5"])
