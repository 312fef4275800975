"""Keep a generated section of a markdown file (a benchmark's table in docs/benchmarks.md) up to date."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, text: str, start: str, end: str, intro: str = "") -> None:
    """Put ``text`` between the markers ``start`` and ``end`` of ``path``; where they are absent, append
    ``intro`` and the marked block (the file is created if missing). Text outside the markers is kept."""
    old = path.read_text() if path.is_file() else ""
    block = f"{start}\n{text}\n{end}"
    if start in old and end in old:
        head, rest = old.split(start, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip() + ("\n\n" if old else "") + intro + block + "\n"
    path.write_text(new)
