"""Students: a layer copy of the teacher ("structure-free" student) or another pretrained Whisper.

``copy_layers(teacher, encoder_layers=None, decoder_layers=[0, 3])`` builds a new Whisper whose kept
layers are exact copies of the teacher's; keeping every layer reproduces the teacher's logits exactly.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import torch
from transformers import WhisperForConditionalGeneration

from geodistill.errors import GeodistillError
from geodistill.models.vocab import VocabMap


def spaced_layers(n_total: int, keep: int | list[int] | None) -> list[int]:
    """Which teacher layers a student keeps.

    A count picks evenly spaced layers and always keeps the last (2 of 32 -> [0, 31]; 1 -> [31]);
    a list is taken as given (validated); None keeps all.
    """
    if keep is None:
        return list(range(n_total))
    if isinstance(keep, list):
        bad = [i for i in keep if not 0 <= i < n_total]
        if bad or len(set(keep)) != len(keep):
            raise GeodistillError(f"layer list {keep}: indices must be distinct and in 0..{n_total - 1}")
        return sorted(keep)
    if not 1 <= keep <= n_total:
        raise GeodistillError(f"layer count {keep}: the teacher has {n_total} layers")
    if keep == 1:
        return [n_total - 1]
    return [int(i) for i in np.linspace(0, n_total - 1, keep).round()]


_LAYER_KEY = re.compile(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.*)$")


def copy_layers(
    teacher: WhisperForConditionalGeneration,
    encoder_layers: int | list[int] | None = None,
    decoder_layers: int | list[int] | None = None,
) -> WhisperForConditionalGeneration:
    """A new Whisper holding copies of the chosen teacher layers (and all non-layer weights)."""
    cfg = copy.deepcopy(teacher.config)
    keep = {
        "encoder": spaced_layers(cfg.encoder_layers, encoder_layers),
        "decoder": spaced_layers(cfg.decoder_layers, decoder_layers),
    }
    cfg.encoder_layers, cfg.decoder_layers = len(keep["encoder"]), len(keep["decoder"])
    new_index = {side: {old: new for new, old in enumerate(idx)} for side, idx in keep.items()}
    state = {}
    for key, value in teacher.state_dict().items():
        m = _LAYER_KEY.match(key)
        if m:
            side, old, rest = m.group(1), int(m.group(2)), m.group(3)
            if old not in new_index[side]:
                continue
            key = f"model.{side}.layers.{new_index[side][old]}.{rest}"
        state[key] = value.detach().clone()
    with torch.device("meta"):
        student = WhisperForConditionalGeneration(cfg)
    student.load_state_dict(state, strict=False, assign=True)
    student.tie_weights()
    missing = [n for n, p in student.named_parameters() if p.is_meta] + [
        n for n, b in student.named_buffers() if b.is_meta
    ]
    if missing:
        raise GeodistillError(f"layer copy left weights unset: {missing[:5]}")
    student.generation_config = copy.deepcopy(teacher.generation_config)
    heads = getattr(student.generation_config, "alignment_heads", None)
    if heads:  # alignment heads name decoder layers; keep those that survive, renumbered
        student.generation_config.alignment_heads = [
            [new_index["decoder"][layer], head] for layer, head in heads if layer in new_index["decoder"]
        ] or None
    student.config.geodistill_kept_layers = keep  # recorded in config.json for provenance
    return student.to(teacher.device).eval()


def token_map(
    teacher_tok, teacher_size: int, student_tok, student_size: int, teacher_name: str, student_name: str
) -> VocabMap | None:
    """None when teacher and student share one vocabulary; the ``VocabMap`` of a large-v3 / turbo teacher
    (51,866 tokens) over a smaller multilingual student (51,865); any other mismatch is refused as
    ``check_same_tokenizer`` refuses it."""
    if teacher_tok.get_vocab() == student_tok.get_vocab() and teacher_size == student_size:
        return None
    vocab_map = VocabMap.between(teacher_tok, teacher_size, student_tok, student_size)
    if vocab_map is None:
        check_same_tokenizer(teacher_tok, student_tok, teacher_name, student_name)
        raise GeodistillError(
            f"student {student_name!r} ({student_size} ids) and teacher {teacher_name!r} "
            f"({teacher_size} ids) have one tokenizer but two vocabulary sizes: token-level distillation "
            "needs one size"
        )
    return vocab_map


def check_same_tokenizer(teacher_tok, student_tok, teacher_name: str, student_name: str) -> None:
    """Refuse teacher/student pairs whose token ids mean different things (KL would compare nonsense)."""
    t_vocab, s_vocab = teacher_tok.get_vocab(), student_tok.get_vocab()
    if t_vocab != s_vocab:
        only_t = len(set(t_vocab.items()) - set(s_vocab.items()))
        only_s = len(set(s_vocab.items()) - set(t_vocab.items()))
        raise GeodistillError(
            f"student {student_name!r} and teacher {teacher_name!r} use different tokenizers "
            f"({len(s_vocab)} vs {len(t_vocab)} tokens; {only_s} student-only and {only_t} teacher-only "
            "entries): token-level distillation needs identical vocabularies (e.g. multilingual small "
            "under large-v2, or tiny.en under base.en)"
        )


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module
