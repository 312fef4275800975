"""``evaluate`` on a streamed ``hub:`` spec, offline: a local folder in the Hub's Parquet layout goes through
the same ``datasets.load_dataset(..., streaming=True)`` path as a Hub dataset id."""

from __future__ import annotations

import json

import pytest

from geodistill.errors import DataError
from geodistill.evaluate.run import evaluate
from tests.data.test_hub import hub_rows, short_shutdown_sleep, write_hub_folder
from tests.test_hardening_cli import assert_one_line_error, cli

pytest.importorskip("datasets")
pytest.importorskip("pyarrow")


@pytest.fixture(autouse=True)
def _short_shutdown_sleep(monkeypatch):
    short_shutdown_sleep(monkeypatch)


def test_cli_evaluates_the_first_usable_rows_of_a_hub_spec(capsys, tiny_model_dir, tmp_path):
    write_hub_folder(tmp_path / "set", "test", hub_rows(8, corrupt=(1, 7), empty=(2,)))
    spec, out = f"hub:{tmp_path / 'set'}:test", tmp_path / "eval"
    args = ["evaluate", "--model", tiny_model_dir, "--data", spec, "--device", "cpu", "--no-warmup"]
    rc, stdout, err = cli(capsys, *args, "--limit", "3", "--out", out)
    assert rc == 0, err
    assert json.loads(stdout)["n_utterances"] == 3
    result = json.loads((out / "eval.json").read_text())
    assert result["data"] == spec and result["limit"] == 3 and result["n_skipped"] == 2
    assert result["audio_seconds"] == pytest.approx(1.0 + 1.3 + 1.4, abs=1e-3)  # rows 0, 3, 4
    rows = [json.loads(line) for line in (out / "utterances.jsonl").read_text().splitlines()]
    assert [(r["id"], r["reference"]) for r in rows] == [("u00", "utt 0"), ("u03", "utt 3"), ("u04", "utt 4")]
    skipped = [json.loads(line) for line in (out / "bad_samples.jsonl").read_text().splitlines()]
    assert [s["item"] for s in skipped] == [
        "hub://u01",
        "hub://u02",
    ]  # row 7 lies past the limit: never decoded


def test_library_evaluates_a_whole_hub_split_in_passes_with_per_language_scores(
    tiny_model_dir, tmp_path, monkeypatch
):
    import geodistill.evaluate.run as run

    write_hub_folder(tmp_path / "set", "test", hub_rows(5, corrupt=(3,), languages=["en", "fr"]))
    monkeypatch.setattr(run, "STREAM_PASS_SECONDS", 2.0)  # passes of 2 clips: the merge is exercised
    real, passes = run.decode_by_language, []

    def spy(family, model, processor, utts, bad, opts):
        passes.append(([u.id for u in utts], opts.warmup))
        return real(family, model, processor, utts, bad, opts)

    monkeypatch.setattr(run, "decode_by_language", spy)
    r = evaluate(
        str(tiny_model_dir), f"hub:{tmp_path / 'set'}:test", device="cpu", max_new_tokens=2, warmup=True
    )
    assert passes == [(["u00", "u01"], True), (["u02", "u04"], False)]  # warm-up before the first pass only
    assert r["n_utterances"] == 4 and r["n_skipped"] == 1
    assert r["audio_seconds"] == pytest.approx(1.0 + 1.1 + 1.2 + 1.4, abs=1e-3)
    assert set(r["per_language"]) == {"en", "fr"}
    assert r["per_language"]["en"]["n_utterances"] == 3 and r["per_language"]["fr"]["n_utterances"] == 1


def test_bad_hub_input_is_one_line(capsys, tiny_model_dir, tmp_path):
    write_hub_folder(tmp_path / "noaudio", "test", [{"file": "a.flac", "sentence": "hi", "speaker_id": 1}])
    write_hub_folder(tmp_path / "ok", "test", hub_rows(1))
    base = ["evaluate", "--model", tiny_model_dir, "--device", "cpu", "--data"]
    spec = f"hub:{tmp_path / 'noaudio'}:test"
    rc, _, err = cli(capsys, *base, spec)
    assert_one_line_error(rc, err, spec, "no audio column", "it has file, sentence, speaker_id")
    rc, _, err = cli(capsys, *base, f"hub:{tmp_path / 'ok'}:validation")
    assert_one_line_error(rc, err, ":validation: cannot open", "Bad split: validation", "['test']")
    rc, _, err = cli(capsys, *base, f"hub:{tmp_path / 'ok'}:test", "--limit", "0")
    assert rc == 2 and "--limit" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="limit must be >= 1"):
        evaluate(str(tiny_model_dir), f"hub:{tmp_path / 'ok'}:test", limit=0)
    with pytest.raises(DataError, match="not DATASET"):
        evaluate(str(tiny_model_dir), "hub:only-a-name", device="cpu")
