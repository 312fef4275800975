"""Train/validation split by speaker, so validation measures generalisation to unseen voices."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from geodistill.data.specs import Utterance
from geodistill.errors import DataError


def speaker_of(utt: Utterance) -> str:
    """The utterance's speaker, else its id up to the first '-' or '_' ("103-1240-0000" -> "103")."""
    return utt.speaker if utt.speaker is not None else re.split(r"[-_]", utt.id, maxsplit=1)[0]


def split_by_speaker(
    utts: Sequence[Utterance], val_fraction: float, seed: int
) -> tuple[list[Utterance], list[Utterance]]:
    """(train, val): whole speakers go to val, in a seeded random order, until it holds >= val_fraction of
    the utterances (at least one speaker, never all). Deterministic for a given seed; order within each part
    follows ``utts``. ``val_fraction == 0`` -> (all, [])."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction {val_fraction}: expected 0 <= val_fraction < 1")
    if val_fraction == 0.0 or not utts:
        return list(utts), []
    speakers = sorted({speaker_of(u) for u in utts})
    if len(speakers) < 2:
        raise DataError(
            f"cannot make a speaker-disjoint validation split from 1 speaker ({speakers[0]!r}); "
            "give a separate validation spec or set the validation fraction to 0"
        )
    random.Random(seed).shuffle(speakers)
    counts: dict[str, int] = {}
    for u in utts:
        counts[speaker_of(u)] = counts.get(speaker_of(u), 0) + 1
    target, val_speakers, n_val = val_fraction * len(utts), set(), 0
    for spk in speakers[:-1]:  # the last one always stays in train
        if n_val >= target:
            break
        val_speakers.add(spk)
        n_val += counts[spk]
    train = [u for u in utts if speaker_of(u) not in val_speakers]
    val = [u for u in utts if speaker_of(u) in val_speakers]
    return train, val
