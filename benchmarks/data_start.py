"""Data start-up: how long ``load_spec`` takes on a large manifest, the first start and the next.

Writes a synthetic manifest of N tiny WAV files (0.1 s each, 1,000 a folder), then times ``load_spec`` on
it in fresh processes, each with its own import cost excluded:

- ``serial`` (only with --serial): ``load_spec`` with every file probed one after another and nothing
  stored (what each start did before geodistill.data.probes);
- ``first``: a new probe store: every file probed by the thread pool, the answers stored;
- ``second``: the same spec again: every file only stat-ed, none probed.

The files are written just before, so all three read them from the page cache: the numbers are the
probing's own cost, not a cold disk's.

    python benchmarks/data_start.py --rows 100000 --serial --write docs/benchmarks.md   # the full run
    python benchmarks/data_start.py --rows 300                                         # small (make test)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from geodistill.markdown import replace_section

START, END = "<!-- data_start:start -->", "<!-- data_start:end -->"
PER_FOLDER = 1000
CLIP_SECONDS = 0.1


def write_manifest(root: Path, rows: int) -> Path:
    """``rows`` copies of one 0.1-s 16-kHz WAV under root/audio/NNN/, listed in root/manifest.jsonl."""
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(16000 * CLIP_SECONDS), np.int16), 16000, format="WAV")
    clip = buf.getvalue()
    lines = []
    for i in range(rows):
        rel = f"audio/{i // PER_FOLDER:03d}/{i:07d}.wav"
        path = root / rel
        if i % PER_FOLDER == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(clip)
        lines.append(json.dumps({"audio_filepath": rel, "text": f"utterance {i}"}) + "\n")
    manifest = root / "manifest.jsonl"
    manifest.write_text("".join(lines))
    return manifest


def child(mode: str, manifest: str) -> None:
    """One start, in this process: print {"seconds", "kept", "probed"} as JSON (files opened by probe)."""
    from geodistill.data import load_spec, probes, specs
    from geodistill.data.audio import probe as probe_file

    opened = []

    def probe(ref):
        opened.append(1)  # list.append is atomic: the pool's threads may count at once
        return probe_file(ref)

    probes.probe = probe
    if mode == "serial":  # as every start ran before: one file after another, nothing stored
        serial = probes.probe_files
        specs.probe_files = lambda refs, store: serial(refs, None, threads=1)
    t0 = time.perf_counter()
    kept = len(load_spec(manifest, min_duration=0.0))
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "kept": int(kept), "probed": len(opened)}))


def start(mode: str, manifest: Path, cache: Path) -> dict:
    env = {**os.environ, "GEODISTILL_CACHE": str(cache)}
    cmd = [sys.executable, __file__, "--child", mode, str(manifest)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{mode} start failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(r: dict) -> str:
    rows = "\n".join(
        f"| {mode} | {s['seconds']:.2f} | {s['probed']:,} | {s['kept']:,} |"
        for mode, s in r["starts"].items()
    )
    return (
        f"{r['rows']:,} rows of 0.1-s WAV files, {r['machine']}, {r['date']}; load average "
        f"{r['load_before']} -> {r['load_after']}. `{r['command']}`.\n\n"
        "| start | seconds | files probed | utterances kept |\n|---|---:|---:|---:|\n" + rows
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--serial", action="store_true", help="also time the old serial probing (no store)")
    p.add_argument("--work", default="runs/bench-data-start")
    p.add_argument("--write", default=None, help="markdown file whose data_start section is replaced")
    p.add_argument("--child", nargs=2, metavar=("MODE", "MANIFEST"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.child:
        child(*a.child)
        return 0
    work = Path(a.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    manifest = write_manifest(work / "data", a.rows)
    load_before = f"{os.getloadavg()[0]:.1f}"
    starts = {}
    if a.serial:
        starts["serial"] = start("serial", manifest, work / "cache-serial")
    for mode in ("first", "second"):
        starts[mode] = start(mode, manifest, work / "cache")
        print(f"{mode}: {starts[mode]['seconds']:.2f} s", file=sys.stderr)
    report = {
        "rows": a.rows,
        "starts": starts,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "load_before": load_before,
        "load_after": f"{os.getloadavg()[0]:.1f}",
        "command": " ".join(
            ["python benchmarks/data_start.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    (work / "result.json").write_text(json.dumps(report, indent=1))
    print(markdown(report))
    if a.write:
        replace_section(Path(a.write), markdown(report), START, END)
    ok = all(s["kept"] == a.rows for s in starts.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
