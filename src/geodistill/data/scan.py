"""``geodistill data scan``: what a data spec holds (utterances, hours, speakers, durations), what is bad."""

from __future__ import annotations

from collections import Counter

from geodistill.data.bad import BadSamples
from geodistill.data.specs import Utterance, load_spec, parse_spec
from geodistill.data.split import speaker_of

EDGES = (0, 1, 2, 3, 5, 10, 15, 20, 30)  # histogram bin edges in seconds; the last bin is open-ended
BAR = 40  # characters of the longest histogram bar
LIST_BAD = 20  # bad items listed one by one; the rest are only counted


def duration_histogram(durations: list[float]) -> list[str]:
    """Text histogram lines, one per bin: ``"  2-3 s   ####....  12"``."""
    bins = Counter()
    for d in durations:
        bins[max(i for i, e in enumerate(EDGES) if d >= e)] += 1
    top = max(bins.values(), default=0)
    lines = []
    for i, lo in enumerate(EDGES):
        label = f"{lo}-{EDGES[i + 1]} s" if i + 1 < len(EDGES) else f">={lo} s"
        bar = "#" * round(BAR * bins[i] / top) if top else ""
        lines.append(f"  {label:>9} |{bar:<{BAR}} {bins[i]}")
    return lines


def _summary(utts: list[Utterance]) -> list[str]:
    secs = [u.duration or 0.0 for u in utts]
    total = sum(secs)
    lines = [
        f"utterances: {len(utts)}",
        f"hours: {total / 3600:.4f} ({total:.1f} s)",
        f"speakers: {len({speaker_of(u) for u in utts})}",
    ]
    if utts:
        lines.append(
            f"duration: mean {total / len(utts):.2f} s, min {min(secs):.2f} s, max {max(secs):.2f} s"
        )
        words = sum(len(u.text.split()) for u in utts)
        lines.append(f"transcripts: {words} words, {words / max(total, 1e-9):.2f} words/s")
        letters = "".join(u.text for u in utts if any(c.isalpha() for c in u.text))
        if letters and letters == letters.upper():
            lines.append(
                "  transcripts are all upper-case: consider data.normalise_text=true (lower-cases them)"
            )
    return lines


def scan_report(
    spec: str, strict: bool = False, min_duration: float = 1.0, max_duration: float = 30.0
) -> str:
    """A plain-text report of ``spec``: counts, hours, speakers, a duration histogram, bad items with reasons.

    ``strict`` raises DataError at the first bad item instead of listing it.
    """
    kind, path = parse_spec(spec)
    bad = BadSamples(strict=strict)
    utts = load_spec(spec, bad=bad, min_duration=min_duration, max_duration=max_duration)
    lines = [f"data spec: {path} ({kind})", *_summary(utts), "duration histogram (usable utterances):"]
    lines += duration_histogram([u.duration or 0.0 for u in utts])
    items = bad.items
    lines.append(
        f"bad or filtered items: {len(items)} (kept duration window {min_duration:g}-{max_duration:g} s)"
    )
    for reason, n in Counter(b["reason"].split(" (")[0] for b in items).most_common():
        lines.append(f"  {n:>6}  {reason}")
    for b in items[:LIST_BAD]:
        lines.append(f"  {b['item']}: {b['reason']}")
    if len(items) > LIST_BAD:
        lines.append(f"  ... and {len(items) - LIST_BAD} more")
    return "\n".join(lines)
