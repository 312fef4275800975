"""Students: layer choice, exact layer copy, tokenizer check, LoRA presets."""

from __future__ import annotations

import pytest
import torch

from geodistill.config import LORA_PRESETS, lora_patterns
from geodistill.errors import GeodistillError
from geodistill.models.lora import add_lora, matching_modules, parameter_counts
from geodistill.models.student import check_same_tokenizer, copy_layers, spaced_layers
from tests.conftest import make_tiny_whisper

FEATS = torch.randn(2, 80, 3000, generator=torch.Generator().manual_seed(0))
DEC = torch.tensor([[50257, 50362, 262, 3797, 318], [50257, 50362, 314, 1101, 257]])


def test_spaced_layers_keep_first_and_last():
    assert spaced_layers(32, 2) == [0, 31]
    assert spaced_layers(32, 1) == [31]
    assert spaced_layers(4, 4) == [0, 1, 2, 3]
    assert spaced_layers(12, 4) == [0, 4, 7, 11]
    assert spaced_layers(6, None) == list(range(6))
    assert spaced_layers(6, [5, 1]) == [1, 5]
    with pytest.raises(GeodistillError, match="indices must be distinct"):
        spaced_layers(4, [0, 4])
    with pytest.raises(GeodistillError, match="the teacher has 4 layers"):
        spaced_layers(4, 5)


def test_full_copy_reproduces_teacher_logits_exactly():
    teacher = make_tiny_whisper(layers=3)
    student = copy_layers(teacher)
    with torch.no_grad():
        a = teacher(input_features=FEATS, decoder_input_ids=DEC).logits
        b = student(input_features=FEATS, decoder_input_ids=DEC).logits
    assert torch.equal(a, b)
    assert student.proj_out.weight.data_ptr() == student.model.decoder.embed_tokens.weight.data_ptr()
    assert (
        student.model.decoder.embed_tokens.weight.data_ptr()
        != teacher.model.decoder.embed_tokens.weight.data_ptr()
    )


def test_partial_copy_keeps_the_chosen_layers_and_generates():
    teacher = make_tiny_whisper(layers=4)
    student = copy_layers(teacher, encoder_layers=2, decoder_layers=[1, 3])
    assert student.config.encoder_layers == 2 and student.config.decoder_layers == 2
    assert torch.equal(student.model.decoder.layers[0].fc1.weight, teacher.model.decoder.layers[1].fc1.weight)
    assert torch.equal(student.model.decoder.layers[1].fc1.weight, teacher.model.decoder.layers[3].fc1.weight)
    assert torch.equal(student.model.encoder.layers[1].fc1.weight, teacher.model.encoder.layers[3].fc1.weight)
    assert [layer.self_attn.layer_idx for layer in student.model.decoder.layers] == [0, 1]
    out = student.generate(FEATS[:1], max_new_tokens=3)  # KV cache works with renumbered layers
    assert out.shape[0] == 1


def test_mismatched_tokenizers_are_refused(tiny_processor):
    class Fake:
        def get_vocab(self):
            vocab = dict(tiny_processor.tokenizer.get_vocab())
            vocab["<|extra|>"] = len(vocab)
            return vocab

    check_same_tokenizer(tiny_processor.tokenizer, tiny_processor.tokenizer, "a", "b")
    with pytest.raises(GeodistillError, match="different tokenizers"):
        check_same_tokenizer(tiny_processor.tokenizer, Fake(), "openai/whisper-large-v2", "tiny.en")


def test_lora_presets_target_the_named_projections():
    model = make_tiny_whisper(layers=2)
    assert len(LORA_PRESETS) >= 10
    names = matching_modules(model, lora_patterns("decoder-cross-qv"))
    assert sorted(names) == sorted(
        f"model.decoder.layers.{i}.encoder_attn.{p}_proj" for i in (0, 1) for p in "qv"
    )
    assert matching_modules(model, lora_patterns("decoder-fc1-fc2")) == [
        f"model.decoder.layers.{i}.fc{j}" for i in (0, 1) for j in (1, 2)
    ]
    with pytest.raises(GeodistillError, match="unknown preset"):
        lora_patterns("decoder-nonsense")


def test_lora_trains_only_adapters_and_starts_as_identity():
    model = make_tiny_whisper(layers=2)
    with torch.no_grad():
        before = model(input_features=FEATS, decoder_input_ids=DEC).logits
    peft_model = add_lora(model, r=4, alpha=8, dropout=0.0, targets="decoder-attn-qv")
    trainable, total = parameter_counts(peft_model)
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert 0 < trainable < total
    with torch.no_grad():
        after = model(input_features=FEATS, decoder_input_ids=DEC).logits  # adapters injected in place
    assert torch.allclose(before, after)  # LoRA B starts at zero
    with pytest.raises(GeodistillError, match="matches no linear layer"):
        add_lora(make_tiny_whisper(layers=1), r=2, alpha=4, dropout=0.0, targets=[r"nothing\.here"])
