"""--assistant: speculative decoding gives the teacher's greedy transcript, drafted by a student."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from geodistill.cli import main
from geodistill.decoding.assistant import decoder_only, shares_encoder, with_assistant
from geodistill.decoding.whisper import features, generate_ids
from geodistill.errors import GeodistillError
from geodistill.evaluate.run import evaluate
from geodistill.models.student import copy_layers
from tests.conftest import make_tiny_whisper
from tests.evaluate.test_integration import librivox_rows


@pytest.fixture
def teacher():
    return make_tiny_whisper(d_model=32, layers=4, heads=2, seed=3)


@pytest.fixture
def student_dir(tmp_path, teacher, tiny_processor):
    folder = tmp_path / "student"
    copy_layers(teacher, None, [0, 3]).save_pretrained(folder)
    tiny_processor.save_pretrained(folder)
    return folder


def test_decoder_only_assistant_computes_the_students_decoder(teacher):
    student = copy_layers(teacher, None, [0, 3])
    causal = decoder_only(student)
    enc = torch.randn(1, 1500, 32)
    ids = torch.tensor([[50257, 50362, 400, 500]])
    want = student(encoder_outputs=(enc,), decoder_input_ids=ids).logits
    got = causal(input_ids=ids, encoder_outputs=(enc,)).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert shares_encoder(teacher, student) and not shares_encoder(teacher, make_tiny_whisper(32, 4, 2, 9))


def test_assisted_ids_equal_the_teachers_greedy_ids(teacher, tiny_processor, student_dir):
    rng = np.random.default_rng(1)
    assisted = with_assistant(teacher, tiny_processor, str(student_dir))
    assert assisted.kind == "decoder-only"
    for n in (16000, 12000):
        feats = features(tiny_processor, [0.1 * rng.standard_normal(n).astype(np.float32)])
        assert (
            generate_ids(assisted, feats, max_new_tokens=12).tolist()
            == generate_ids(teacher, feats, max_new_tokens=12).tolist()
        )
    assert assisted.stats.drafted > 0 and 0 <= assisted.fields()["assistant_acceptance"] <= 1


def test_batch_above_one_is_refused(teacher, tiny_processor, student_dir):
    assisted = with_assistant(teacher, tiny_processor, str(student_dir))
    feats = features(tiny_processor, [np.zeros(16000, np.float32)] * 2)
    with pytest.raises(GeodistillError, match="--batch-size 1"):
        generate_ids(assisted, feats, max_new_tokens=3)


def test_cli_refuses_assistant_with_a_batch(tiny_model_dir, student_dir, alsa_wav, capsys):
    args = ["transcribe", str(tiny_model_dir), str(alsa_wav), "--assistant", str(student_dir)]
    assert main([*args, "--batch-size", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--batch-size 1" in err


def test_assistant_with_another_tokenizer_is_one_line(
    tmp_path, tiny_model_dir, tiny_processor, alsa_wav, capsys
):
    import copy

    other = tmp_path / "other"
    make_tiny_whisper(d_model=32, layers=1).save_pretrained(other)
    processor = copy.deepcopy(tiny_processor)
    processor.tokenizer.add_tokens(["<|an-extra-token|>"])
    processor.save_pretrained(other)
    capsys.readouterr()
    assert main(["transcribe", str(tiny_model_dir), str(alsa_wav), "--assistant", str(other)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tokenizer differs" in errors[0] and str(other) in errors[0]


@pytest.mark.integration
def test_tiny_en_with_a_copy_student_assistant_keeps_every_word(tmp_path, alsa_wav):
    from geodistill.models import load_whisper

    teacher, processor = load_whisper("tiny.en")
    student = tmp_path / "run" / "best"
    copy_layers(teacher, None, [0, 3]).save_pretrained(student)
    processor.save_pretrained(student)
    (tmp_path / "run" / "training_config.json").write_text("{}")
    rows = librivox_rows(4) + [{"audio_filepath": str(alsa_wav), "text": "Front center", "speaker": "alsa"}]
    manifest = tmp_path / "real.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = evaluate("tiny.en", str(manifest), out=tmp_path / "plain", device="cpu", batch_size=1)
    fast = evaluate(
        "tiny.en",
        str(manifest),
        out=tmp_path / "fast",
        device="cpu",
        batch_size=1,
        assistant=str(tmp_path / "run"),
    )

    def hyps(folder):
        return [json.loads(x)["hypothesis"] for x in (folder / "utterances.jsonl").read_text().splitlines()]

    assert hyps(tmp_path / "fast") == hyps(tmp_path / "plain") and fast["wer"] == plain["wer"]
    saved = json.loads((tmp_path / "fast" / "eval.json").read_text())
    assert saved["assistant_kind"] == "decoder-only" and 0 <= saved["assistant_acceptance"] <= 1
    assert saved["assistant_drafted"] > 0 and saved["rtf"] > 0
