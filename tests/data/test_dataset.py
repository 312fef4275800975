"""Samples, batches and loaders: shapes, label masks, bad files dropped, reproducible order."""

from __future__ import annotations

import pytest
import torch

from geodistill.contracts import IGNORE_INDEX
from geodistill.data import (
    BadSamples,
    SpeechDataset,
    Utterance,
    WhisperCollator,
    load_spec,
    make_loader,
    prompt_ids,
    text_tokens,
)

from .conftest import CLIPS, write_librispeech

PROMPT = [50257, 50362]  # tiny.en: <|startoftranscript|> <|notimestamps|>
PAD = 50256


@pytest.fixture
def utts(librispeech):
    return load_spec(librispeech)


def test_sample_holds_features_labels_and_seconds(utts, tiny_processor):
    ds = SpeechDataset(utts, tiny_processor)
    s = ds[0]
    assert s["id"] == "11-1-0000"
    assert s["input_features"].shape == (80, 3000) and s["input_features"].dtype == torch.float32
    assert s["labels"] == text_tokens(tiny_processor, "HELLO WORLD")
    assert s["labels"][-1] == 50256 and s["audio_seconds"] == pytest.approx(1.5)
    assert "audio" not in s
    assert SpeechDataset(utts, tiny_processor, with_audio=True)[0]["audio"].shape == (24000,)


def test_normalise_text_lower_cases(utts, tiny_processor):
    s = SpeechDataset(utts, tiny_processor, normalise_text=True)[0]
    assert tiny_processor.tokenizer.decode(s["labels"][:-1]) == " hello world"


def test_bad_file_at_load_time_gives_none_and_a_log_line(librispeech, tiny_processor, tmp_path):
    utts = load_spec(librispeech)
    (librispeech / "11" / "1" / "11-1-0000.flac").write_bytes(b"")  # broke after the scan
    bad = BadSamples(tmp_path / "bad.jsonl")
    ds = SpeechDataset(utts + [Utterance("x", utts[1].audio, "   ")], tiny_processor, bad=bad)
    assert ds[0] is None and ds[1] is not None and ds[len(utts)] is None
    assert [b["reason"] for b in bad.items] == ["empty file (0 bytes)", "empty transcript"]
    with pytest.raises(Exception, match="empty file"):
        SpeechDataset(utts, tiny_processor, bad=BadSamples(strict=True))[0]


def test_collator_aligns_inputs_and_labels():
    a = {
        "id": "a",
        "input_features": torch.ones(80, 3000),
        "labels": [10, 11, 12, 50256],
        "audio_seconds": 1.0,
    }
    b = {"id": "b", "input_features": torch.zeros(80, 3000), "labels": [20, 50256], "audio_seconds": 2.5}
    batch = WhisperCollator(PROMPT, PAD)([a, None, b])
    assert batch["ids"] == ["a", "b"]
    assert batch["input_features"].shape == (2, 80, 3000)
    assert batch["decoder_input_ids"].tolist() == [[50257, 50362, 10, 11, 12], [50257, 50362, 20, PAD, PAD]]
    assert batch["labels"].tolist() == [
        [IGNORE_INDEX, 10, 11, 12, 50256],
        [IGNORE_INDEX, 20, 50256, IGNORE_INDEX, IGNORE_INDEX],
    ]
    assert batch["audio_seconds"].tolist() == [1.0, 2.5]
    # position i of the decoder input predicts label i: last prompt token -> first text token, ... -> eot
    dec, lab = batch["decoder_input_ids"][0], batch["labels"][0]
    assert dec[len(PROMPT) - 1].item() == 50362 and lab[len(PROMPT) - 1].item() == 10
    assert (lab[: len(PROMPT) - 1] == IGNORE_INDEX).all()


def test_collator_with_a_multilingual_prompt():
    prompt = [50258, 50259, 50359, 50363]
    batch = WhisperCollator(prompt, 50257)(
        [{"id": "a", "input_features": torch.zeros(80, 3000), "labels": [7, 50257], "audio_seconds": 1.0}]
    )
    assert batch["decoder_input_ids"].tolist() == [prompt + [7]]
    assert batch["labels"].tolist() == [[IGNORE_INDEX] * 3 + [7, 50257]]


def test_all_bad_batch_is_empty_and_skippable():
    batch = WhisperCollator(PROMPT, PAD)([None, None])
    assert batch["ids"] == [] and batch["decoder_input_ids"].shape == (0, 0) and batch["labels"].numel() == 0


def test_real_batch_end_to_end(utts, tiny_processor, tiny_whisper):
    prompt = prompt_ids(tiny_processor, tiny_whisper)
    ds = SpeechDataset(utts, tiny_processor)
    batch = WhisperCollator(prompt, tiny_processor.tokenizer.pad_token_id)([ds[i] for i in range(len(ds))])
    out = tiny_whisper(
        input_features=batch["input_features"],
        decoder_input_ids=batch["decoder_input_ids"],
        labels=batch["labels"],
    )
    assert out.logits.shape[:2] == batch["labels"].shape and torch.isfinite(out.loss)
    for row, u in zip(batch["labels"], utts, strict=True):
        text = [t for t in row.tolist() if t != IGNORE_INDEX]
        assert tiny_processor.tokenizer.decode(text[:-1]) == " " + u.text and text[-1] == 50256


def test_loader_with_workers_survives_a_bad_file(tmp_path, tiny_processor):
    root = write_librispeech(tmp_path / "ls")
    utts = load_spec(root)
    (root / "12" / "3" / "12-3-0000.ogg").write_bytes(b"OggS" + bytes(40))  # corrupted after the scan
    bad = BadSamples(tmp_path / "bad.jsonl")
    loader = make_loader(
        SpeechDataset(utts, tiny_processor, bad=bad),
        WhisperCollator(PROMPT, PAD),
        batch_size=2,
        shuffle=True,
        seed=3,
        num_workers=2,
    )
    ids = [i for batch in loader for i in batch["ids"]]
    assert sorted(ids) == sorted(c.uid for c in CLIPS if c.uid != "12-3-0000")
    assert bad.count == 1 and bad.items[0]["item"].endswith("12-3-0000.ogg")  # written by a worker


def test_loader_order_depends_only_on_the_seed():
    def order(seed):
        return [list(b) for b in make_loader(range(16), lambda x: x, batch_size=3, shuffle=True, seed=seed)]

    torch.manual_seed(123)
    first = order(7)
    torch.manual_seed(999)  # the global RNG does not matter
    assert order(7) == first and order(8) != first
    assert sorted(sum(first, [])) == list(range(16))


class _Indices(torch.utils.data.Dataset):
    """Yields its own indices: batch order without decoding audio."""

    def __init__(self, utts):
        self.utts = utts

    def __len__(self):
        return len(self.utts)

    def __getitem__(self, i):
        return i


def test_group_by_length_batches_similar_durations():
    durations = [1, 9, 2, 8, 1.5, 8.5, 3]
    ds = _Indices([Utterance(f"s{i}", "x.wav", "t", duration=float(d)) for i, d in enumerate(durations)])
    loader = make_loader(ds, lambda x: x, batch_size=3, shuffle=True, seed=0, group_by_length=True)
    batches = [sorted(b) for b in loader]
    assert sorted(batches) == [[0], [1, 3, 5], [2, 4, 6]]
    assert len(loader) == 3
    again = make_loader(ds, lambda x: x, batch_size=3, shuffle=True, seed=0, group_by_length=True)
    assert [sorted(b) for b in again] == batches
    ordered = make_loader(ds, lambda x: x, batch_size=3, shuffle=False, seed=0, group_by_length=True)
    assert [list(b) for b in ordered] == [[1, 5, 3], [6, 2, 4], [0]]  # longest first
