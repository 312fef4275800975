"""A teacher over a larger vocabulary, seen in the student's ids (``models.vocab.VocabMap``): large-v3 and
turbo (51,866 tokens) over a smaller multilingual student (51,865).

``InStudentVocab(provider, vocab_map)`` is a provider like any other: the batch (student ids) goes to the
teacher in its own ids (and with its own log-Mel features when its Mel count differs), and what comes
back is in the student's ids, with the teacher renormalised over the shared ids:

- full logits (online teacher, or a cache with full_logits): the student's columns are gathered, so the
  softmax of the KL runs over the shared ids only;
- top-k (a cache): top-k ids are mapped; an entry on a dropped id (<|yue|>) becomes p = 0 (logit -inf,
  on a duplicate of a kept id, so no other token's mass moves); the full-vocabulary normaliser loses
  exactly the dropped ids' mass: logsumexp_shared = lse + log(1 - sum_d exp(z_d / T - lse)), with z_d the
  raw logits the cache stores for them (``extra_logits``). The bucket KL over (top-k, tail) is then the
  exact one of the renormalised teacher, as for a teacher with that vocabulary.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from geodistill.contracts import Batch, TeacherOffer, TeacherOutputs, TeacherProvider
from geodistill.errors import GeodistillError
from geodistill.models.vocab import VocabMap


class InStudentVocab:
    """``provider``'s outputs in the student's vocabulary (module docstring)."""

    def __init__(self, provider: TeacherProvider, vocab_map: VocabMap):
        self.provider, self.map = provider, vocab_map

    @property
    def offer(self) -> TeacherOffer:
        return self.provider.offer

    def __call__(self, batch: Batch) -> TeacherOutputs:
        m = self.map
        theirs = dict(batch)
        theirs["decoder_input_ids"] = m.to_teacher(batch["decoder_input_ids"])
        theirs["labels"] = m.to_teacher(batch["labels"])
        if "teacher_features" in batch:
            theirs["input_features"] = batch["teacher_features"]
        return in_student_vocab(self.provider(theirs), m)  # type: ignore[arg-type]


def in_student_vocab(out: TeacherOutputs, m: VocabMap) -> TeacherOutputs:
    """Teacher outputs over V_t ids -> over the student's V_s ids (module docstring)."""
    logits = None if out.logits is None else m.logits(out.logits)
    if out.topk_indices is None or out.topk_values is None or out.logsumexp is None:
        return replace(out, logits=logits)
    dropped = torch.tensor(m.dropped, dtype=torch.long)
    missing = set(m.dropped) - set(out.extra_ids)
    if missing:
        raise GeodistillError(
            f"teacher outputs: top-k without the logits of teacher ids {sorted(missing)} (which the "
            "student's vocabulary lacks): rebuild the teacher cache with this version of geodistill"
        )
    values, indices = _topk_in_student_vocab(out.topk_values, out.topk_indices, m, dropped)
    extra = out.extra_logits
    assert extra is not None  # extra_ids cover the dropped ids
    cols = [out.extra_ids.index(j) for j in m.dropped]
    lse = _lse_without(out.logsumexp, extra[..., cols].float(), out.logsumexp_temperature)
    return replace(out, logits=logits, topk_values=values, topk_indices=indices, logsumexp=lse)


def _topk_in_student_vocab(
    values: Tensor, indices: Tensor, m: VocabMap, dropped: Tensor
) -> tuple[Tensor, Tensor]:
    """(values, indices) (B, L, k): ids mapped; a dropped id's entry -> -inf on the row's first kept id."""
    gone = torch.isin(indices, dropped.to(indices.device))
    back = torch.full((m.teacher_size,), 0, dtype=torch.long, device=indices.device)
    back[m.index.to(indices.device)] = torch.arange(m.student_size, device=indices.device)
    ids = back[indices.long()]
    first_kept = ids.gather(-1, (~gone).long().argmax(dim=-1, keepdim=True)).expand_as(ids)
    ids = torch.where(gone, first_kept, ids)
    return values.float().masked_fill(gone, float("-inf")), ids


def _lse_without(lse: Tensor, dropped_logits: Tensor, temperature: float) -> Tensor:
    """logsumexp over the kept ids, (B, L): the full one (at ``temperature``) less the dropped ids' terms."""
    share = torch.exp(dropped_logits / temperature - lse.unsqueeze(-1)).sum(-1)
    # never below the smallest representable remainder: a teacher all on <|yue|> has nothing left to learn
    return lse + torch.log1p(-share.clamp(max=1.0 - 1e-6))


__all__ = ["InStudentVocab", "in_student_vocab"]
