"""How much of what a model must say a trimmed output vocabulary can say: the share of the tokens of some
transcripts (e.g. the teacher's on the real test split) that lie outside a trimmed student's kept ids, and
how that share falls as more ids are kept (the ids of plain text files, the N lowest ids).

    python scripts/vocab_coverage.py runs/grid/dec4-trim/best runs/demo/run/eval-teacher/utterances.jsonl \
        --text kjv.txt --first 5000 10000 20000 30000

Transcripts: a ``geodistill evaluate`` ``utterances.jsonl`` (its ``hypothesis``) or a manifest (its
``text``). GPT-2's byte-level BPE, which the English Whisper models use, numbers its merges roughly from the
most frequent piece down, so the N lowest ids are a data-free guess at "the N commonest pieces".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from geodistill.models import load_whisper
from geodistill.models.trim import read_kept


def token_rows(tokenizer, texts: list[str]) -> list[list[int]]:
    """Each text's ids as a transcript continues after the prompt (a leading space, no special tokens)."""
    rows: list[list[int]] = []
    for i in range(0, len(texts), 2000):
        rows += tokenizer([" " + t.strip() for t in texts[i : i + 2000]], add_special_tokens=False).input_ids
    return rows


def missing(rows: list[list[int]], kept: set[int]) -> tuple[int, int, int]:
    """(tokens outside ``kept``, all tokens, transcripts with at least one token outside)."""
    flat = [i for r in rows for i in r]
    return sum(i not in kept for i in flat), len(flat), sum(any(i not in kept for i in r) for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", type=Path, help="a trimmed student's folder (its vocab_kept.json)")
    p.add_argument("transcripts", type=Path, help="utterances.jsonl (hypothesis) or a manifest (text)")
    p.add_argument("--text", type=Path, nargs="*", default=[], help="plain text files whose ids are added")
    p.add_argument("--first", type=int, nargs="*", default=[], help="add the N lowest ids")
    a = p.parse_args()
    kept_list = read_kept(a.model)
    if kept_list is None:
        raise SystemExit(f"{a.model}: no vocab_kept.json (not a trimmed student)")
    kept = set(kept_list)
    _, processor = load_whisper(str(a.model))
    tok = processor.tokenizer
    rows = [
        json.loads(line) for line in a.transcripts.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
    texts = [r.get("hypothesis", r.get("text", "")) for r in rows]
    ids = token_rows(tok, texts)
    text_ids: set[int] = set()
    for path in a.text:
        for row in token_rows(tok, path.read_text(encoding="utf-8").splitlines()):
            text_ids.update(row)
    print(f"{len(texts)} transcripts of {a.transcripts}")
    print("| kept ids | how many | tokens outside | transcripts with one outside |")
    print("|---|---:|---:|---:|")
    cases = [("the student's", kept)]
    if text_ids:
        names = ", ".join(p.name for p in a.text)
        cases.append((f"+ the ids of {names} ({len(text_ids):,})", kept | text_ids))
    cases += [(f"+ ids below {n:,}", kept | set(range(n))) for n in a.first]
    for name, ids_kept in cases:
        out, total, rows_out = missing(ids, ids_kept)
        share = f"{out} of {total} ({out / total:.0%})"
        print(f"| {name} | {len(ids_kept):,} | {share} | {rows_out} of {len(ids)} |")


if __name__ == "__main__":
    main()
