"""scripts/layer_grid.py (issue 29's grid): its data steps and its table, on built inputs."""

from __future__ import annotations

import json

from tests.conftest import REPO, load_script

grid = load_script(REPO / "scripts" / "layer_grid.py")


def _row(wer: float, rtf: float, cap: int = 0) -> dict:
    return {"wer": wer, "cer": wer / 2, "rtf": rtf, "hit_token_cap": cap, "n_utterances": 111, "n_words": 796,
            "load": [0.1, 0.3], "threads": 1}  # fmt: skip


def test_the_table_gives_each_cell_its_speed_up_over_the_stock_model_in_ct2(tmp_path):
    results = {
        "tiny.en/hf": _row(0.239, 0.2), "tiny.en/ct2": _row(0.231, 0.12),
        "dec2/hf": _row(0.5, 0.05, cap=3), "dec2/ct2": _row(0.6, 0.02, cap=4),
        "dec1/hf": _row(4.0, 0.3),  # its ct2 run is missing: no row
    }  # fmt: skip
    (tmp_path / "grid.json").write_text(json.dumps(results))
    text = grid.table(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    assert rows[0].startswith("| stock tiny.en, 30 s | 23.9 / 23.1 % |") and rows[0].endswith("| 1.00x |")
    assert (
        rows[1] == "| `dec2`: decoder_layers=2 | 50.0 / 60.0 % | 30.0 % | 3 / 4 | 0.0500 | 0.0200 | 6.00x |"
    )
    assert len(rows) == 2 and "111 clips, batch 1" in text and "0.10-0.30" in text


def test_split_and_data_hold_out_36_prompts_and_join_the_pseudo_labels(tmp_path):
    asterisk = tmp_path / "asterisk"
    asterisk.mkdir()
    rows = [
        {"audio_filepath": f"en/en-{i:04d}.flac", "text": f"prompt {i}", "id": f"en-{i:04d}"}
        for i in range(40)
    ]
    (asterisk / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "grid"
    out.mkdir()
    grid.split_asterisk(asterisk, out)
    val = [json.loads(r) for r in (out / "asterisk-val.jsonl").read_text().splitlines()]
    train = [json.loads(r) for r in (out / "asterisk-train.jsonl").read_text().splitlines()]
    assert len(val) == 36 and len(train) == 4 and not {r["id"] for r in val} & {r["id"] for r in train}
    assert all(r["audio_filepath"].startswith(str(asterisk.resolve())) for r in val + train)
    (out / "asterisk-train-pl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (out / "demo-train-pl.jsonl").write_text(json.dumps({"id": "d1", "text": "x"}) + "\n")
    grid.make_data(out)
    joined = [json.loads(r)["id"] for r in (out / "train.jsonl").read_text().splitlines()]
    assert sorted(joined) == sorted(["d1", *(r["id"] for r in train)])
    assert (out / "val.jsonl").read_text() == (out / "asterisk-val.jsonl").read_text()


def test_a_whisper_cpp_column_appears_when_it_was_run(tmp_path):
    results = {
        "tiny.en/hf": _row(0.239, 0.2), "tiny.en/ct2": _row(0.231, 0.12),
        "tiny.en/whispercpp": _row(0.24, 0.3), "dec2/hf": _row(0.5, 0.05), "dec2/ct2": _row(0.6, 0.02),
    }  # fmt: skip
    (tmp_path / "grid.json").write_text(json.dumps(results))
    rows = [line for line in grid.table(tmp_path).splitlines() if line.startswith("| ")]
    assert rows[0].endswith("whisper.cpp q8_0: WER, RTF |")
    assert rows[1].endswith("| 24.0 %, 0.3000 |") and rows[2].endswith("| 6.00x | - |")
