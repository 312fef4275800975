"""The token map between two Whisper vocabularies that share their text tokens but not every special token:
large-v3 and turbo (51,866 tokens: 100 languages, <|yue|> added after <|su|>) over a smaller multilingual
student (51,865: 99 languages). Text ids 0..50,256 and <|endoftext|>, <|startoftranscript|> and the 99 shared
languages keep their ids; <|translate|> .. <|notimestamps|> and the 1,501 timestamps sit one id later in
the larger vocabulary.

``VocabMap.between(teacher_tokenizer, teacher_vocab_size, student_tokenizer, student_vocab_size)`` builds it
from the real tokenizers (tokens matched by name; <|nocaptions|> and <|nospeech|> are one token under two
names; the timestamps by their place after <|notimestamps|>, since some tokenizer files list none), or
returns None when it cannot: any text token differs, a student token has no teacher counterpart, or a
teacher token other than a language has no student counterpart. The batch stays in the student's ids;
the teacher is fed ``to_teacher(ids)`` and its logits are cut to the student's vocabulary by ``logits``:
the KL is then over the shared ids, the teacher renormalised over them (its mass on <|yue|> dropped
exactly, not folded into another token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from geodistill.contracts import IGNORE_INDEX

_ALIASES = {"<|nocaptions|>": "<|nospeech|>", "<|nospeech|>": "<|nocaptions|>"}  # renamed in newer files
_NO_TIMESTAMPS = "<|notimestamps|>"
_EOT = "<|endoftext|>"


@dataclass(frozen=True)
class VocabMap:
    """Student id -> teacher id, and the teacher ids the student vocabulary lacks."""

    to_teacher_ids: tuple[int, ...]  # (V_s,) the teacher id of each student id
    teacher_size: int  # V_t
    dropped: tuple[int, ...]  # teacher ids with no student counterpart (large-v3 under v2: <|yue|>)

    @property
    def student_size(self) -> int:
        return len(self.to_teacher_ids)

    @property
    def index(self) -> Tensor:
        """(V_s,) int64: ``teacher_logits[..., index]`` are the logits of the student's ids."""
        return torch.tensor(self.to_teacher_ids, dtype=torch.long)

    def to_teacher(self, ids: Tensor) -> Tensor:
        """Student ids (any shape) -> teacher ids; IGNORE_INDEX (-100) stays as it is."""
        index = self.index.to(ids.device)
        return torch.where(ids == IGNORE_INDEX, ids, index[ids.clamp_min(0)])

    def to_student(self, ids: Tensor) -> Tensor:
        """Teacher ids -> student ids; a dropped id (no student counterpart) raises ValueError."""
        back = torch.full((self.teacher_size,), -1, dtype=torch.long)
        back[self.index] = torch.arange(self.student_size)
        out = torch.where(ids == IGNORE_INDEX, ids, back.to(ids.device)[ids.clamp_min(0)])
        if bool((out == -1).any()):
            raise ValueError(
                f"teacher ids {sorted(set(ids[out == -1].tolist()))} have no student counterpart"
            )
        return out

    def logits(self, teacher_logits: Tensor) -> Tensor:
        """(..., V_t) -> (..., V_s): the teacher's logits of the student's ids (the dropped ones left out)."""
        return teacher_logits.index_select(-1, self.index.to(teacher_logits.device))

    @classmethod
    def between(cls, teacher_tok, teacher_size: int, student_tok, student_size: int) -> VocabMap | None:
        """The map from the two tokenizers (and their models' vocab sizes), or None when there is none."""
        t_vocab, s_vocab = teacher_tok.get_vocab(), student_tok.get_vocab()
        t_eot, s_eot = t_vocab.get(_EOT), s_vocab.get(_EOT)
        t_nts, s_nts = t_vocab.get(_NO_TIMESTAMPS), s_vocab.get(_NO_TIMESTAMPS)
        if None in (t_eot, s_eot, t_nts, s_nts) or t_eot != s_eot:
            return None
        if (
            student_size - s_nts != teacher_size - t_nts
        ):  # the same count of timestamps after <|notimestamps|>
            return None
        t_text = {tok: i for tok, i in t_vocab.items() if i < t_eot}
        if t_text != {tok: i for tok, i in s_vocab.items() if i < s_eot}:
            return None
        t_names = {i: tok for tok, i in t_vocab.items()}
        to_teacher = list(range(s_eot)) + [-1] * (student_size - s_eot)
        for tok, i in s_vocab.items():
            if s_eot <= i <= s_nts:
                j = t_vocab.get(tok, t_vocab.get(_ALIASES.get(tok, ""), -1))
                to_teacher[i] = j
        for k in range(s_nts + 1, student_size):  # timestamps, by their place
            to_teacher[k] = t_nts + (k - s_nts)
        if -1 in to_teacher or len(set(to_teacher)) != student_size:
            return None
        dropped = sorted(set(range(teacher_size)) - set(to_teacher))
        if not all(_is_language(t_names.get(j, "")) for j in dropped):
            return None
        return cls(tuple(to_teacher), teacher_size, tuple(dropped))


def _is_language(token: str) -> bool:
    return token.startswith("<|") and token.endswith("|>") and token[2:-2] in LANGUAGES
