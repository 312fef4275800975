"""Benchmark: a long recording decoded each way geodistill offers, per model and engine: WER against the
joined reference and real-time factor.

    .venv/bin/python benchmarks/long_form.py --data runs/long10/manifest.jsonl \
        --models tiny.en runs/demo/run --write docs/export-and-runtimes.md

``--data`` is a manifest of long recordings with their transcripts (``scripts/long_audio.py`` joins real
clips into one). Each (model, engine, mode) is one ``geodistill evaluate`` call in this process, greedy,
``--batch-size`` 8, no warm-up (a warm-up batch would decode the whole file once more), in modes:

- sequential: the engine's sequential long-form decoding (transformers' ``generate``, faster-whisper's
  ``transcribe``), one 30-s window after the other;
- vad: ``--vad``, the speech packed into chunks of at most 30 s, decoded ``--batch-size`` at a time (ct2:
  faster-whisper's own ``vad_filter``);
- chunked: ``--long-form chunked``, fixed 30-s windows decoded ``--batch-size`` at a time
  (``geodistill.decoding.chunked``).

RTF is decoding time / audio time from one run each (``evaluate``'s: log-Mel extraction of the short-form
path excluded, long-form decoding's included), so compare ratios within one table: the machine is shared.
The threads and the load average before and after each row are recorded.

``--small`` (what ``make test`` runs): tiny.en on about 42 s of LibriVox speech joined from the test
fixtures' recordings (pocketsphinx-testdata), nothing written unless ``--write`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from geodistill.data import load_audio
from geodistill.decoding.speed import machine
from geodistill.evaluate.run import evaluate
from geodistill.markdown import replace_section

MODES = {
    "sequential": {},
    "vad": {"vad": True},
    "chunked": {"long_form_mode": "chunked"},
}
MARK_START, MARK_END = "<!-- long-form:start -->", "<!-- long-form:end -->"
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
SMALL_ORDER = [0, 1, 2, 3, 2, 3, 4]  # LibriVox clips joined with 1-s pauses: about 42 s


def small_recording(folder: Path) -> str:
    """A manifest of one recording: the LibriVox test clips in ``SMALL_ORDER`` with 1-s pauses."""
    lines = (LIBRIVOX / "transcription").read_text().splitlines()
    rows = [(line.rsplit("(", 1)[1].rstrip(")"), line.split("</s>")[0].removeprefix("<s>")) for line in lines]
    parts, texts = [], []
    for i in SMALL_ORDER:
        name, text = rows[i]
        parts += [load_audio(LIBRIVOX / f"{name}.wav"), np.zeros(16000, np.float32)]
        texts.append(text.strip())
    audio = np.concatenate(parts[:-1])
    sf.write(folder / "small.wav", audio, 16000)
    row = {"audio_filepath": "small.wav", "text": " ".join(texts), "duration": audio.size / 16000}
    (folder / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    return str(folder / "manifest.jsonl")


def one(model: str, engine: str, mode: str, data: str, batch: int) -> dict:
    """One row: ``evaluate``'s numbers of ``model`` in ``engine`` and ``mode`` over ``data``."""
    before = os.getloadavg()[0]
    r = evaluate(model, data, device="cpu", engine=engine, batch_size=batch, long_form=True, **MODES[mode])
    keep = ("wer", "cer", "rtf", "n_ref_words", "audio_seconds", "chunked_windows", "chunked_batches")
    return {
        "model": model,
        "engine": engine,
        "mode": mode,
        **{k: r.get(k) for k in keep},
        "threads": r.get("threads", torch.get_num_threads()),
        "load_average": [before, os.getloadavg()[0]],
    }


def run(models: list[str], engines: list[str], modes: list[str], data: str, batch: int) -> dict:
    rows = []
    for model in models:
        for engine in engines:
            for mode in modes:
                rows.append(one(model, engine, mode, data, batch))
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {
        "data": data,
        "batch_size": batch,
        "threads": torch.get_num_threads(),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": "python benchmarks/long_form.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }


DESCRIBE = {
    "sequential": "sequential long-form",
    "vad": "`--vad`, chunks batched",
    "chunked": "`--long-form chunked`, windows batched",
}


def table(result: dict) -> str:
    rows = result["rows"]
    seconds = rows[0]["audio_seconds"] if rows else 0.0
    words = rows[0]["n_ref_words"] if rows else 0
    lines = [
        f"`{result['command']}`  ",
        f"`{result['data']}`: {seconds:.0f} s, {words} reference words; greedy, "
        f"batch {result['batch_size']}, "
        f"{result['threads']} thread(s), no warm-up, one run each; {result['machine']}; {result['date']}.",
        "",
        "| model | engine | decoding | WER | RTF | windows (batches) | load before/after |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for r in rows:
        windows = f"{r['chunked_windows']} ({r['chunked_batches']})" if r["mode"] == "chunked" else "-"
        cells = [
            f"`{r['model']}`",
            r["engine"],
            DESCRIBE[r["mode"]],
            f"{100 * r['wer']:.1f} %",
            f"{r['rtf']:.3f}",
            windows,
            "{:.1f}/{:.1f}".format(*r["load_average"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="manifest of long recordings with transcripts (scripts/long_audio.py)")
    p.add_argument("--models", nargs="+", default=["tiny.en"])
    p.add_argument("--engines", nargs="+", default=["hf", "ct2"], choices=["hf", "ct2"])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write", type=Path, help="markdown file whose long-form section gets the table")
    p.add_argument("--json", type=Path, help="write the numbers here too")
    p.add_argument("--small", action="store_true", help="tiny.en on ~42 s of LibriVox (make test)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 -- only the script silences it

    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="geodistill-long-form-") as tmp:
        if a.small:
            a.data, a.models = small_recording(Path(tmp)), ["tiny.en"]
        elif not a.data:
            p.error("--data is needed (or --small)")
        result = run(a.models, a.engines, a.modes, a.data, a.batch_size)
    text = table(result)
    print(text)
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    if a.write:
        replace_section(a.write, text, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
