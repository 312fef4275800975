"""Independent reference maths for the loss tests: plain Python floats and lists, no torch."""

from __future__ import annotations

import math


def softmax(xs: list[float], temperature: float = 1.0) -> list[float]:
    top = max(xs)
    e = [math.exp((x - top) / temperature) for x in xs]
    total = sum(e)
    return [v / total for v in e]


def kl(p: list[float], q: list[float]) -> float:
    """KL(p || q) = sum p log(p / q), with 0 log 0 = 0."""
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def logsumexp(xs: list[float], temperature: float = 1.0) -> float:
    top = max(xs)
    return top / temperature + math.log(sum(math.exp((x - top) / temperature) for x in xs))
