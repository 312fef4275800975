"""The CTC student's units: BPE pieces trained on the transcripts, their CTC loss, saving and bad input."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from geodistill.config import ConfigError, load_config
from geodistill.errors import ModelLoadError
from geodistill.export import export
from geodistill.students.ctc.loss import CTCLoss, frames_needed, normalise_for_ctc
from geodistill.students.ctc.model import CTCModel, CTCShape, CTCStudent, ctc_greedy, load_ctc
from geodistill.students.ctc.units import UNITS_FILE, WORD, CharUnits, make_units, train_bpe
from geodistill.train.loop import train
from tests.students.ctc_runs import ctc_run_config

TEXTS = [
    "The front door is open.",
    "Close the front door, please!",
    "Don't leave the door open at night",
    "Seven green houses stand near the quick brown fox",
    "A lazy dog jumps over the fence",
] * 4


def test_bpe_units_round_trip_text_and_are_fewer_than_characters():
    units = train_bpe(TEXTS, 60)
    assert units.vocab[0] == "<blank>" and len(units.vocab) == 61
    assert any(p.startswith(WORD) and len(p) > 2 for p in units.vocab)  # whole-word pieces were learnt
    for text in [*TEXTS[:5], "the door stays open", "zebra"]:  # "zebra": unseen, spelled from smaller pieces
        ids, dropped = units.encode(text)
        assert dropped == [] and 0 not in ids  # never the blank
        assert units.decode(ids) == normalise_for_ctc(text)
    for text in TEXTS[:5]:  # the transcripts it was trained on take fewer units than characters
        assert len(units.encode(text)[0]) < len(normalise_for_ctc(text))
    chars, _ = CharUnits().encode("front door")
    assert CharUnits().decode(chars) == "front door"


def test_bpe_drops_characters_it_cannot_spell_instead_of_unk():
    units = train_bpe(["aaa bbb ab ba"] * 5, 8)
    ids, dropped = units.encode("abc ba")
    assert dropped == ["c"] and units.decode(ids) == "ab ba"


def test_bpe_training_is_deterministic():
    """A resumed run retrains its units: the same transcripts must give the very same model."""
    assert train_bpe(TEXTS, 50).proto == train_bpe(TEXTS, 50).proto


def test_ctc_loss_over_bpe_targets_equals_torch_ctc_loss():
    units = train_bpe(TEXTS, 60)
    targets = [units.encode(t)[0] for t in ("the front door", "close the door please")]
    torch.manual_seed(0)
    frames = torch.tensor([40, 30])
    log_probs = torch.randn(2, 40, len(units.vocab)).log_softmax(-1)
    padded = torch.zeros(2, max(map(len, targets)), dtype=torch.long)
    for b, ids in enumerate(targets):
        padded[b, : len(ids)] = torch.tensor(ids)
    lengths = torch.tensor([len(t) for t in targets])
    ours = CTCLoss()(log_probs, padded, frames, lengths)
    # the reference: torch's own CTC per utterance on the concatenated targets, averaged by hand
    flat = torch.tensor([i for t in targets for i in t])
    ref = F.ctc_loss(log_probs.transpose(0, 1), flat, frames, lengths, blank=0, reduction="none")
    assert torch.allclose(ours, ref.mean())
    assert all(frames_needed(t) <= int(f) for t, f in zip(targets, frames, strict=True))


def test_greedy_decoding_of_bpe_pieces_puts_spaces_at_word_starts():
    units = train_bpe(TEXTS, 60)
    ids = units.encode("the front door")[0]
    frames = torch.full((1, 2 * len(ids), len(units.vocab)), -20.0)
    for k, i in enumerate(ids):
        frames[0, 2 * k, i] = 0.0
        frames[0, 2 * k + 1, 0] = 0.0  # a blank between, so repeated pieces stay two
    assert ctc_greedy(frames, torch.tensor([frames.shape[1]]), units.vocab) == ["the front door"]


@pytest.mark.parametrize(
    ("vocab", "expected"),
    [
        ("words", "student.ctc.vocab: 'words': unknown unit type (use chars or bpe:N)"),
        ("bpe", "student.ctc.vocab: 'bpe': bpe:N needs a unit count N >= 2, e.g. bpe:256"),
        ("bpe:x", "student.ctc.vocab: 'bpe:x': bpe:N needs a unit count N >= 2"),
    ],
)
def test_an_unknown_unit_type_is_one_line(vocab, expected):
    with pytest.raises(ConfigError) as err:
        load_config({"student": {"init": "ctc", "ctc": {"vocab": vocab}}, "loss": {"hidden_on": "encoder"}})
    assert expected in str(err.value) and "\n" not in str(err.value).strip()


def test_a_bpe_size_the_text_cannot_support_is_one_line():
    with pytest.raises(ConfigError) as err:
        make_units("bpe:5000", TEXTS)
    msg = str(err.value)
    assert msg.startswith("student.ctc.vocab: bpe:5000: more units than the 20 training transcripts support")
    assert "\n" not in msg
    with pytest.raises(
        ConfigError, match=r"student.ctc.vocab: bpe:5: fewer units than .* need \(at least \d+\)"
    ):
        make_units("bpe:5", TEXTS)


def test_a_bpe_student_saves_and_loads_its_units(tmp_path, tiny_processor):
    units = train_bpe(TEXTS, 40)
    shape = CTCShape(n_mels=80, d_model=16, layers=1, heads=2, ffn=32, vocab=units.vocab, units=units.spec)
    CTCStudent(CTCModel(shape, units), tiny_processor, torch.nn.ModuleDict(), "tiny").save(tmp_path / "s")
    model, _ = load_ctc(tmp_path / "s")
    assert model.units is not None and model.units.vocab == units.vocab and model.shape.units == "bpe:40"
    assert json.loads((tmp_path / "s" / "vocab.json").read_text()) == list(units.vocab)
    (tmp_path / "s" / UNITS_FILE).write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"units.model: not a sentencepiece model"):
        load_ctc(tmp_path / "s")
    (tmp_path / "s" / UNITS_FILE).unlink()
    with pytest.raises(
        ModelLoadError, match=r"units.model: missing; a bpe:40 CTC student needs its BPE model"
    ):
        load_ctc(tmp_path / "s")


def test_a_bpe_run_trains_saves_and_its_units_come_from_the_transcripts(
    tmp_path, tiny_teacher_dir, tiny_data
):
    train_spec, val_spec = tiny_data
    cfg = load_config(
        ctc_run_config(tmp_path / "run", tiny_teacher_dir, train_spec, val_spec, vocab="bpe:40")
    )
    assert train(cfg).exit_code == 0
    model, _ = load_ctc(tmp_path / "run")
    assert model.shape.units == "bpe:40" and len(model.shape.vocab) == 41 and model.head.out_features == 41
    assert (tmp_path / "run" / "adapter_final" / UNITS_FILE).is_file()
    out = export(tmp_path / "run", "hf", tmp_path / "export")  # the export decodes with the same units
    exported, _ = load_ctc(out)
    assert (out / UNITS_FILE).read_bytes() == (tmp_path / "run" / "best" / UNITS_FILE).read_bytes()
    assert exported.shape == model.shape and "BPE pieces (bpe:40)" in (out / "README.md").read_text()
    # trained on the run's training transcripts (not the validation ones)
    texts = [json.loads(line)["text"] for line in train_spec.read_text().splitlines()]
    assert model.shape.vocab == train_bpe(texts, 40).vocab
    assert model.units is not None and model.units.decode(
        model.units.encode(texts[0])[0]
    ) == normalise_for_ctc(texts[0])
