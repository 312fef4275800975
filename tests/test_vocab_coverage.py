"""scripts/vocab_coverage.py: the share of a transcript's tokens a kept-id set cannot say."""

from __future__ import annotations

from tests.conftest import REPO, load_script

coverage = load_script(REPO / "scripts" / "vocab_coverage.py")


def test_tokens_outside_the_kept_ids_are_counted_per_token_and_per_transcript(tiny_processor):
    rows = coverage.token_rows(tiny_processor.tokenizer, ["front center", "hello"])
    assert rows[0] == tiny_processor.tokenizer(" front center", add_special_tokens=False).input_ids
    kept = set(rows[0])
    assert coverage.missing(rows, kept) == (len(rows[1]), len(rows[0]) + len(rows[1]), 1)
    assert coverage.missing(rows, kept | set(rows[1])) == (0, len(rows[0]) + len(rows[1]), 0)
