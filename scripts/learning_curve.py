"""A run's learning curve on a test set: test WER of its best student so far vs training minutes.

A run keeps only its latest ``best/``. Run ``watch`` beside the training: it copies ``best/`` to
``snaps/step-N/`` each time validation improves, until ``adapter_final/`` appears. Afterwards ``table``
evaluates every snapshot with ``geodistill evaluate`` (skipping those already evaluated) and prints a
Markdown table: step, minutes since the run's first log line, validation WER, test WER, CER.

    python scripts/learning_curve.py watch runs/ctc &        # beside `geodistill train ... run_dir=runs/ctc`
    python scripts/learning_curve.py table runs/ctc --data runs/demo/corpus/test
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ ")
VALIDATION = re.compile(r"step (\d+): validation WER")


def watch(run: Path, every: float) -> None:
    """Copy run/best to run/snaps/step-N whenever its step changes; stop once adapter_final exists."""
    snaps = run / "snaps"
    snaps.mkdir(parents=True, exist_ok=True)
    while not (run / "adapter_final" / "geodistill.json").exists():
        record = run / "best" / "geodistill.json"
        if record.exists():
            try:
                step = json.loads(record.read_text())["step"]
            except (OSError, ValueError, KeyError):
                step = None  # best/ being swapped in: look again next time
            target = snaps / f"step-{step}"
            if step is not None and not target.exists():
                shutil.copytree(run / "best", snaps / f".step-{step}.tmp", dirs_exist_ok=True)
                (snaps / f".step-{step}.tmp").rename(target)
                print(f"snapshot {target}", flush=True)
        time.sleep(every)


def log_times(run: Path) -> tuple[datetime, dict[int, datetime]]:
    """(time of the run's first log line, time each validation step was logged) from train.log."""
    start, at = None, {}
    for line in (run / "train.log").read_text(encoding="utf-8").splitlines():
        stamp = STAMP.match(line)
        if not stamp:
            continue
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")
        start = start or when
        found = VALIDATION.search(line)
        if found:
            at.setdefault(int(found.group(1)), when)
    if start is None:
        sys.exit(f"{run / 'train.log'}: no timestamped line")
    return start, at


def table(run: Path, data: str, threads: int) -> None:
    start, at = log_times(run)
    snaps = sorted((run / "snaps").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    if not snaps:
        sys.exit(f"{run / 'snaps'}: no snapshots (run `watch` beside the training)")
    print("| step | training minutes | validation WER | test WER | test CER |")
    print("|---|---|---|---|---|")
    for snap in snaps:
        out = snap / "eval-test"
        if not (out / "eval.json").exists():
            cmd = ["geodistill", "evaluate", "--model", str(snap), "--data", data, "--out", str(out)]
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # eval.json records the threads
            subprocess.run(cmd, check=True, capture_output=True, env=env)
        step = int(snap.name.split("-")[1])
        val = json.loads((snap / "geodistill.json").read_text())
        test = json.loads((out / "eval.json").read_text())
        minutes = (at[step] - start).total_seconds() / 60 if step in at else float("nan")
        print(
            f"| {step} | {minutes:.0f} | {100 * val['wer']:.1f} % | {100 * test['wer']:.1f} % "
            f"| {100 * test['cer']:.1f} % |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("watch", help="snapshot best/ as training goes")
    w.add_argument("run", type=Path)
    w.add_argument("--every", type=float, default=10.0, help="seconds between looks")
    t = sub.add_parser("table", help="evaluate the snapshots and print the curve")
    t.add_argument("run", type=Path)
    t.add_argument("--data", required=True, help="the test data spec")
    t.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.command == "watch":
        watch(args.run, args.every)
    else:
        table(args.run, args.data, args.threads)


if __name__ == "__main__":
    main()
