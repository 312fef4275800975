"""Training sentences for the synthetic half of the demo corpus: a small seeded template grammar.

Everyday English, 5-15 words, written the way Whisper writes (capital letter, punctuation, numbers as
words so the TTS voice and the transcript agree). The vocabulary leans lightly on the real test clips'
domains (directions, playing cards, digits, a Regency novel) without ever producing a test sentence:
``sentences(n, exclude=...)`` drops any candidate equal to an excluded one after normalisation.
The stream is prefix-stable: ``sentences(n)`` is the first n of ``sentences(m)`` for any m > n.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable

MIN_WORDS, MAX_WORDS = 5, 15

WOMEN = ("Elinor", "Marianne", "Margaret", "Anna", "Lucy", "Clara", "Harriet", "Jane", "Ruth", "Sophie")
MEN = ("Edward", "John", "Thomas", "Henry", "Robert", "Peter", "Samuel", "William", "Daniel", "Arthur")
NUMBERS = ("two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty")
RANKS = ("ace", "king", "queen", "jack", "two", "three", "five", "six", "nine", "ten")
SUITS = ("hearts", "spades", "clubs", "diamonds")
PLACES = (
    "the garden",
    "the kitchen",
    "the station",
    "the library",
    "the market",
    "the harbour",
    "the village",
    "the old mill",
    "the school",
    "the bridge",
    "the cottage",
    "the hill",
)
THINGS = (
    "letter",
    "basket",
    "lantern",
    "umbrella",
    "map",
    "key",
    "parcel",
    "book",
    "coat",
    "kettle",
    "bicycle",
    "ladder",
    "blanket",
    "clock",
)
ADJ = ("old", "small", "heavy", "bright", "quiet", "broken", "new", "wooden", "cold", "lovely", "narrow")
TIMES = (
    "this morning",
    "last night",
    "after dinner",
    "before noon",
    "on Sunday",
    "at dawn",
    "yesterday",
    "every evening",
    "in the spring",
    "next week",
)
HEADINGS = ("forward", "straight on", "north", "south", "east", "west", "uphill", "along the river")
UNITS = ("meters", "steps", "miles", "yards", "feet")
MANNER = ("slowly", "quietly", "carefully", "quickly", "cheerfully", "patiently")
VERBS_PAST = ("walked", "hurried", "drove", "wandered", "ran", "cycled", "returned")
CARRY = ("carried", "found", "mended", "painted", "borrowed", "dropped", "cleaned", "wrapped")
QUALITY = (
    "amiable",
    "sensible",
    "respectable",
    "generous",
    "proud",
    "cheerful",
    "honest",
    "clever",
    "selfish",
    "anxious",
    "patient",
)
WEATHER = ("rain", "fog", "snow", "wind", "sunshine", "storm")


def _person(rng: random.Random) -> tuple[str, str, str]:
    """(name, subject pronoun, object pronoun)."""
    if rng.random() < 0.5:
        return rng.choice(WOMEN), "she", "her"
    return rng.choice(MEN), "he", "him"


def _walk(r: random.Random) -> str:
    name, _, _ = _person(r)
    return f"{name} {r.choice(VERBS_PAST)} {r.choice(MANNER)} to {r.choice(PLACES)} {r.choice(TIMES)}."


def _thing(r: random.Random) -> str:
    name, he, _ = _person(r)
    return (
        f"{name} {r.choice(CARRY)} the {r.choice(ADJ)} {r.choice(THINGS)} "
        f"before {he} went to {r.choice(PLACES)}."
    )


def _question(r: random.Random) -> str:
    name, _, _ = _person(r)
    return f"Where did you leave the {r.choice(THINGS)} that {name} gave you {r.choice(TIMES)}?"


def _route(r: random.Random) -> str:
    return (
        f"Go {r.choice(HEADINGS)} {r.choice(NUMBERS)} {r.choice(UNITS)}, then turn "
        f"{r.choice(('left', 'right'))} at {r.choice(PLACES)}."
    )


def _cards(r: random.Random) -> str:
    name, he, _ = _person(r)
    rank, suit = r.choice(RANKS), r.choice(SUITS)
    ending = r.choice(("and won the game", "and laughed", "but lost the round", "and said nothing"))
    return f"{name} played the {rank} of {suit} {ending}."


def _character(r: random.Random) -> str:
    name, he, _ = _person(r)
    a, b = r.sample(QUALITY, 2)
    return f"{name} was thought very {a}, though {he} could be rather {b}."


def _weather(r: random.Random) -> str:
    return (
        f"By {r.choice(('evening', 'midnight', 'noon', 'morning'))} the {r.choice(WEATHER)} "
        f"had reached {r.choice(PLACES)}."
    )


def _digits(r: random.Random) -> str:
    digits = " ".join(
        r.choice(("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero"))
        for _ in range(r.randint(3, 5))
    )
    return f"The number you asked for is {digits}."


def _said(r: random.Random) -> str:
    name, _, him = _person(r)
    return f"{name} said the {r.choice(THINGS)} was {r.choice(ADJ)}, but nobody believed {him}."


def _short(r: random.Random) -> str:
    return r.choice(
        (
            f"Please bring the {r.choice(ADJ)} {r.choice(THINGS)} here.",
            f"{_person(r)[0]} stayed at home {r.choice(TIMES)}.",
            f"The {r.choice(THINGS)} was {r.choice(ADJ)} and {r.choice(ADJ)}.",
        )
    )


def _story(r: random.Random) -> str:
    name, he, _ = _person(r)
    return (
        f"When {name} reached {r.choice(PLACES)}, {he} found the {r.choice(THINGS)} "
        f"and went home {r.choice(MANNER)}."
    )


def _count(r: random.Random) -> str:
    return (
        f"We counted {r.choice(NUMBERS)} {r.choice(('boats', 'birds', 'houses', 'trees', 'lamps'))} "
        f"near {r.choice(PLACES)} {r.choice(TIMES)}."
    )


TEMPLATES: tuple[Callable[[random.Random], str], ...] = (
    _walk,
    _thing,
    _question,
    _route,
    _cards,
    _character,
    _weather,
    _digits,
    _said,
    _count,
    _short,
    _story,
)


def normalise_sentence(text: str) -> str:
    """Lower-case letters/digits/spaces only: how two sentences are compared for equality."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split())


def sentences(n: int, seed: int = 0, exclude: Iterable[str] = ()) -> list[str]:
    """``n`` distinct sentences of 5-15 words, fixed by ``seed``; none equals an ``exclude`` one."""
    rng = random.Random(seed)
    banned = {normalise_sentence(t) for t in exclude}
    out, seen = [], set()
    for _ in range(200 * n + 100):
        if len(out) == n:
            break
        text = rng.choice(TEMPLATES)(rng)
        key = normalise_sentence(text)
        if key in seen or key in banned or not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            continue
        seen.add(key)
        out.append(text)
    if len(out) < n:
        raise ValueError(f"the sentence grammar gave only {len(out)} distinct sentences, {n} asked")
    return out
