"""Benchmark: whisper.cpp (pywhispercpp) real-time factor of a model's f16 and q8_0 files, by thread count.

    .venv/bin/python benchmarks/whispercpp_rtf.py --model tiny.en --threads 1 2 --rounds 3

The model (an embedded name or an HF Whisper folder) is written with ``geodistill.models.ggml.write_ggml``
as f16 and q8_0 into a temporary folder; each (type, threads) pair gets one ``WhisperCppModel``, warmed up on
one clip. Clips: real recordings, the LibriVox clips of pocketsphinx-testdata and the alsa-utils "Front
Center" prompt, decoded one at a time (batch 1, greedy, full context). Rounds interleave the pairs
(rotating which goes first); reported per pair: median and best RTF (decode seconds / audio seconds,
16-kHz float audio in memory, log-Mel included), load seconds, file size, WER against the references, and
the load average around the run (the machine may be shared: compare pairs of the same run only).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
ALSA = Path("/usr/share/sounds/alsa/Front_Center.wav")


def real_clips() -> tuple[list[str], list[str]]:
    paths, refs = [], []
    if (LIBRIVOX / "transcription").is_file():
        for line in (LIBRIVOX / "transcription").read_text().splitlines():
            m = re.fullmatch(r"<s> (.*) </s> \((.*)\)", line.strip())
            if m:
                paths.append(str(LIBRIVOX / f"{m[2]}.wav"))
                refs.append(m[1])
    if ALSA.is_file():
        paths.append(str(ALSA))
        refs.append("front center")
    if not paths:
        sys.exit("no real clips: apt-get install pocketsphinx-testdata alsa-utils")
    return paths, refs


def hf_folder(spec: str) -> Path:
    from geodistill.models.loading import EMBEDDED, converted_dir, embedded_source

    return converted_dir(embedded_source(spec)) if spec in EMBEDDED else Path(spec)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtypes", nargs="+", default=["f16", "q8_0"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clips", type=int, default=None, help="the first N clips only (the small mode: 1)")
    ap.add_argument("--no-fallback", action="store_true", help="greedy only (no temperature fallback)")
    args = ap.parse_args(argv)

    from geodistill.data.audio import load_audio
    from geodistill.decoding.wer import wer_scores
    from geodistill.decoding.whispercpp import WhisperCppModel
    from geodistill.models.ggml import write_ggml

    paths, refs = real_clips()
    paths, refs = paths[: args.clips], refs[: args.clips]
    audios = [load_audio(p) for p in paths]
    seconds = sum(a.size for a in audios) / 16000
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        files = {d: write_ggml(hf_folder(args.model), Path(tmp) / f"model-{d}.bin", d) for d in args.dtypes}
        pairs = [(d, t) for t in args.threads for d in args.dtypes]
        engines, load_s = {}, {}
        for d, t in pairs:
            start = time.perf_counter()
            engines[d, t] = WhisperCppModel(files[d], threads=t, fallback=not args.no_fallback)
            load_s[d, t] = time.perf_counter() - start
            engines[d, t].transcribe(audios[:1])  # warm-up
        rtf: dict[tuple[str, int], list[float]] = {p: [] for p in pairs}
        texts = {}
        for r in range(args.rounds):
            for d, t in pairs[r % len(pairs) :] + pairs[: r % len(pairs)]:
                start = time.perf_counter()
                texts[d, t] = engines[d, t].transcribe(audios)
                rtf[d, t].append((time.perf_counter() - start) / seconds)
        sizes = {d: f.stat().st_size / 1e6 for d, f in files.items()}
        for engine in engines.values():
            engine.close()
    load_after = os.getloadavg()
    print(f"model {args.model}, {len(audios)} clips, {seconds:.1f} s of audio, {args.rounds} rounds")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; {os.cpu_count()} CPUs")
    print("| type | threads | median RTF | best RTF | RTF per round | load s | file MB | WER |")
    print("|---|---|---|---|---|---|---|---|")
    for d, t in pairs:
        rounds = " ".join(f"{x:.3f}" for x in rtf[d, t])
        wer = wer_scores(refs, texts[d, t])["wer"]
        median, best = statistics.median(rtf[d, t]), min(rtf[d, t])
        cells = [
            d,
            t,
            f"{median:.3f}",
            f"{best:.3f}",
            rounds,
            f"{load_s[d, t]:.2f}",
            f"{sizes[d]:.1f}",
            f"{wer:.3f}",
        ]
        print("| " + " | ".join(map(str, cells)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
