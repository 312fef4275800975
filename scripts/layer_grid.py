"""Issue 29's grid: how many layers a dynamic-audio-context tiny.en student can lose, and a trimmed output
vocabulary, on the richest English data this project has offline; scored at batch 1 next to
faster-whisper's stock tiny.en int8.

    geodistill data real runs/asterisk-en --languages en --per-language 0
    python scripts/layer_grid.py split runs/grid             # 36 of those prompts held out for validation
    geodistill data pseudo-label --teacher tiny.en --data runs/grid/asterisk-train.jsonl \
        --out runs/grid/asterisk-train-pl.jsonl --wer-threshold 0.2 --timestamps
    geodistill data pseudo-label --teacher tiny.en --data runs/demo/corpus/train \
        --out runs/grid/demo-train-pl.jsonl --wer-threshold 0.2 --timestamps
    python scripts/layer_grid.py data  runs/grid             # train.jsonl, val.jsonl
    python scripts/layer_grid.py train runs/grid --cells dec4 dec2 [--steps 400] [--threads 1]
    python scripts/layer_grid.py eval  runs/grid --test runs/demo/corpus/test [--threads 1]
    python scripts/layer_grid.py table runs/grid [--write FILE]

Training data: the teacher's timestamped pseudo-labels (WER filter 0.2) of the demo corpus' synthetic train
split and of Asterisk's English prompts (one real professional voice, never in the test split). Validation:
36 held-out Asterisk prompts (real speech, short phrases: where a student that loops on short clips shows
it). Every cell is the ``dynamic-cpu`` preset (tiny.en copied, dynamic audio context, every weight trained,
teacher cache) plus its overrides in ``CELLS``, the same ``--steps`` and seed 0 for every cell; the best
validation checkpoint is the one evaluated.

``eval`` runs ``geodistill evaluate --batch-size 1`` on every finished cell in ``hf`` and ``ct2`` (int8), one
process at a time, and the same for the stock tiny.en (``ct2`` at 30 s is what faster-whisper runs), and
records the load average around each. ``table`` prints (or writes between markers) WER, CER, token-cap hits,
RTF and each RTF as a speed-up over faster-whisper's stock tiny.en int8 measured in the same ``eval``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from pathlib import Path

from geodistill.markdown import replace_section

CELLS: dict[str, list[str]] = {
    "dec4": [],  # no layer dropped: the dynamic-cpu student on this data
    "dec3": ["student.decoder_layers=3"],
    "dec2": ["student.decoder_layers=2"],
    "dec1": ["student.decoder_layers=1"],
    "enc3-dec4": ["student.encoder_layers=3"],
    "enc3-dec2": ["student.encoder_layers=3", "student.decoder_layers=2"],
    # the output vocabulary trimmed to the ids the training text and the teacher's likely top-k use
    "dec4-trim": ["student.vocab=trimmed"],
    "dec2-trim": ["student.decoder_layers=2", "student.vocab=trimmed"],
    # issue 24 item 4: dec2 and dec3 trained on timestamped pseudo-labels for a fifth of their utterances
    "dec2-ts": ["student.decoder_layers=2", "data.timestamp_probability=0.2"],
    "dec3-ts": ["student.decoder_layers=3", "data.timestamp_probability=0.2"],
}
ENGINES = ("hf", "ct2", "whispercpp")  # eval's default: hf and ct2; whispercpp when asked for
BASELINE = "tiny.en"  # the stock model; in ct2 int8 at 30 s it is what faster-whisper runs
MARK_START, MARK_END = "<!-- layer-grid:start -->", "<!-- layer-grid:end -->"


def make_data(out: Path) -> None:
    """train.jsonl and val.jsonl under ``out`` from the pseudo-labels (``*-pl.jsonl``) written beside them."""
    rows = []
    for name in ("demo-train-pl.jsonl", "asterisk-train-pl.jsonl"):
        path = out / name
        if not path.exists():
            sys.exit(f"{path}: missing (make it with `geodistill data pseudo-label`, docs/results.md)")
        rows += path.read_text(encoding="utf-8").splitlines()
    random.Random(0).shuffle(rows)
    (out / "train.jsonl").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    val = (out / "asterisk-val.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "val.jsonl").write_text("".join(r + "\n" for r in val), encoding="utf-8")
    print(f"{out / 'train.jsonl'}: {len(rows)} rows; {out / 'val.jsonl'}: {len(val)} rows")


def split_asterisk(asterisk: Path, out: Path, held_out: int = 36) -> None:
    """asterisk-train.jsonl / asterisk-val.jsonl (absolute paths), a seeded split of ``data real --languages
    en``'s manifest."""
    rows = [json.loads(r) for r in (asterisk / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    for r in rows:
        r["audio_filepath"] = str((asterisk / r["audio_filepath"]).resolve())
    random.Random(0).shuffle(rows)
    for name, part in (("asterisk-val", rows[:held_out]), ("asterisk-train", rows[held_out:])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")


def env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}


def train(out: Path, cells: list[str], steps: int, threads: int) -> None:
    """Train each cell (resuming one that stopped); its teacher cache is built on the way."""
    for cell in cells:
        if (out / cell / "adapter_final").is_dir():
            print(f"{cell}: done")
            continue
        timestamps = any(o.startswith("data.timestamp_probability") for o in CELLS[cell])
        cmd = [
            sys.executable, "-m", "geodistill.cli", "train", "--config", "dynamic-cpu",
            f"data.train={out / 'train.jsonl'}", f"data.val={out / 'val.jsonl'}", "data.val_limit=36",
            f"teacher_cache={out / ('teacher-cache-ts' if timestamps else 'teacher-cache')}",
            f"train.max_steps={steps}", f"train.warmup_steps={steps // 10}", f"train.eval_every={steps // 4}",
            f"train.save_every={steps // 4}", "train.num_workers=0", "train.seed=0",
            *CELLS[cell], f"run_dir={out / cell}",
        ]  # fmt: skip
        print(" ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True, env=env(threads))


def load() -> float:
    return os.getloadavg()[0]


def evaluate(out: Path, test: str, threads: int, cells: list[str], engines: list[str]) -> None:
    """``geodistill evaluate --batch-size 1`` of the baseline and each finished cell, in each engine."""
    results = json.loads((out / "grid.json").read_text()) if (out / "grid.json").exists() else {}
    models = [(BASELINE, BASELINE)] + [
        (c, str(out / c)) for c in cells if (out / c / "adapter_final").is_dir()
    ]
    for name, model in models:
        for engine in engines:
            where = out / "eval" / f"{name}-{engine}"
            cmd = [sys.executable, "-m", "geodistill.cli", "-q", "evaluate", "--model", model,
                   "--data", test, "--batch-size", "1", "--engine", engine, "--device", "cpu",
                   "--out", str(where)]  # fmt: skip
            before = load()
            subprocess.run(cmd, check=True, env=env(threads))
            ev = json.loads((where / "eval.json").read_text())
            results[f"{name}/{engine}"] = {
                **{k: ev.get(k) for k in ("wer", "cer", "rtf", "hit_token_cap", "n_utterances", "n_words")},
                "load": [round(before, 2), round(load(), 2)],
                "threads": threads,
            }
            print(name, engine, results[f"{name}/{engine}"], flush=True)
            (out / "grid.json").write_text(json.dumps(results, indent=2))


def _cpp_cell(r: dict | None) -> str:
    return f" {100 * r['wer']:.1f} %, {r['rtf']:.4f} |" if r else " - |"


def table(out: Path) -> str:
    """One row per model: WER, CER and token-cap hits in each engine, batch-1 RTF in each engine, and the ct2
    RTF as a speed-up over faster-whisper's stock tiny.en (the baseline's ct2 row of the same ``eval``)."""
    results = json.loads((out / "grid.json").read_text())
    base = results[f"{BASELINE}/ct2"]["rtf"]
    cpp = any(key.endswith("/whispercpp") for key in results)  # a whisper.cpp column when it was run
    lines = [
        "| model | WER hf / ct2 | CER ct2 | token-cap hits hf / ct2 | RTF hf | RTF ct2 | x faster-whisper |"
        + (" whisper.cpp q8_0: WER, RTF |" if cpp else ""),
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if cpp else ""),
    ]
    names = dict.fromkeys(key.split("/")[0] for key in results)
    for name in names:
        hf, ct2 = results.get(f"{name}/hf"), results.get(f"{name}/ct2")
        if hf is None or ct2 is None:
            continue
        label = (
            "stock tiny.en, 30 s"
            if name == BASELINE
            else f"`{name}`: "
            + (" ".join(o.removeprefix("student.") for o in CELLS.get(name, [])) or "no layer dropped")
        )
        lines.append(
            f"| {label} | {100 * hf['wer']:.1f} / {100 * ct2['wer']:.1f} % | {100 * ct2['cer']:.1f} % | "
            f"{hf['hit_token_cap']} / {ct2['hit_token_cap']} | {hf['rtf']:.4f} | {ct2['rtf']:.4f} | "
            f"{base / ct2['rtf']:.2f}x |" + (_cpp_cell(results.get(f"{name}/whispercpp")) if cpp else "")
        )
    loads = [x for r in results.values() for x in r["load"]]
    n = next(iter(results.values()))
    lines.append(
        f"\n{n['n_utterances']} clips, batch 1, greedy, {n['threads']} thread(s); load average "
        f"{min(loads):.2f}-{max(loads):.2f} around the runs."
    )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("split", "data", "train", "eval", "table"))
    p.add_argument("out", type=Path)
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--engines", nargs="+", default=["hf", "ct2"], choices=ENGINES)
    p.add_argument("--asterisk", type=Path, default=Path("runs/asterisk-en"))
    p.add_argument("--test", default="runs/demo/corpus/test")
    p.add_argument("--write", type=Path, help="put the table between the layer-grid markers of this file")
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.step == "split":
        split_asterisk(a.asterisk, a.out)
    elif a.step == "data":
        make_data(a.out)
    elif a.step == "train":
        train(a.out, a.cells, a.steps, a.threads)
    elif a.step == "eval":
        evaluate(a.out, a.test, a.threads, a.cells, a.engines)
    else:
        text = table(a.out)
        if a.write:
            replace_section(a.write, text, MARK_START, MARK_END)
        print(text)


if __name__ == "__main__":
    main()
