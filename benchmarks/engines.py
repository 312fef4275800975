"""Benchmark: a teacher and its student in every decoding engine, batch 1, in one run.

    .venv/bin/python benchmarks/engines.py --teacher tiny.en --student runs/demo/run \
        --data runs/demo/corpus/test --write docs/benchmarks.md

Each (model, engine) pair is its own ``geodistill evaluate --batch-size 1`` process (peak memory is the
process's peak RSS), run one after another with the same thread count, with the CLI's warm-up batch. The
engines: ``hf`` (transformers, fp32), ``ct2`` (CTranslate2 int8), ``whispercpp`` (whisper.cpp q8_0) and
``onnx`` (ONNX Runtime fp32). A student with a dynamic audio context keeps it in every engine (its rule is
carried through each conversion); the teacher runs at Whisper's 30 s. Reported per pair: WER, RTF, peak
memory, and the student's RTF as a fraction of the teacher's in the same engine. ``ct2`` on the teacher is
what faster-whisper runs on a stock model (CTranslate2 int8 at 30 s). The load average before and after is
recorded: on a shared machine compare pairs of one run only.

``--small`` (what ``make test`` runs): a tiny random teacher and student on two synthetic clips, every
engine whose package is installed, nothing written unless ``--write`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from geodistill.markdown import replace_section

ENGINES = {"hf": None, "ct2": "ctranslate2", "whispercpp": "pywhispercpp", "onnx": "onnxruntime"}
MARK_START, MARK_END = "<!-- engines:start -->", "<!-- engines:end -->"


def available(engines: list[str]) -> list[str]:
    """The engines whose package is installed (hf always)."""
    return [e for e in engines if ENGINES[e] is None or importlib.util.find_spec(ENGINES[e]) is not None]


def evaluate(model: str, data: str, engine: str, out: Path, threads: int, limit: int | None) -> dict:
    """eval.json of one ``geodistill evaluate`` process."""
    cmd = [sys.executable, "-m", "geodistill.cli", "evaluate", "--model", model, "--data", data]
    cmd += ["--engine", engine, "--batch-size", "1", "--device", "cpu", "--out", str(out)]
    cmd += ["--limit", str(limit)] if limit else []
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{model} --engine {engine}: {done.stderr.strip().splitlines()[-1]}")
    return json.loads((out / "eval.json").read_text())


def run(teacher: str, student: str, data: str, engines: list[str], threads: int, limit: int | None) -> dict:
    load = [os.getloadavg()[0]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="geodistill-engines-") as tmp:
        for engine in engines:
            pair = {}
            for role, model in (("teacher", teacher), ("student", student)):
                r = evaluate(model, data, engine, Path(tmp) / f"{role}-{engine}", threads, limit)
                pair[role] = {
                    k: r[k] for k in ("wer", "rtf", "peak_memory_mb", "params", "dtype", "n_utterances")
                }
                pair[role]["audio_context"] = r.get("audio_context")
            rows.append(
                {
                    "engine": engine,
                    **pair,
                    "student_vs_teacher": pair["student"]["rtf"] / pair["teacher"]["rtf"],
                }
            )
    load.append(os.getloadavg()[0])
    return {
        "teacher": teacher,
        "student": student,
        "data": data,
        "threads": threads,
        "batch_size": 1,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": load,
        "rows": rows,
    }


def table(result: dict) -> str:
    rows = result["rows"]
    ct2 = next((r["teacher"]["rtf"] for r in rows if r["engine"] == "ct2"), None)
    lines = [
        f"Teacher `{result['teacher']}` vs student `{result['student']}` on `{result['data']}` "
        f"({rows[0]['teacher']['n_utterances']} clips), batch 1, {result['threads']} thread(s), "
        f"{result['machine']}, {result['date']}; load average {result['load_average'][0]:.1f} -> "
        f"{result['load_average'][1]:.1f}. `benchmarks/engines.py`.",
        "",
        "| engine | teacher WER | student WER | teacher RTF | student RTF | student / teacher | student / "
        "teacher in ct2 | teacher peak MB | student peak MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, s = r["teacher"], r["student"]
        vs_ct2 = f"{s['rtf'] / ct2:.2f}x" if ct2 else "-"
        lines.append(
            f"| {r['engine']} ({s['dtype']}) | {100 * t['wer']:.1f} % | {100 * s['wer']:.1f} % | "
            f"{t['rtf']:.4f} | {s['rtf']:.4f} | {r['student_vs_teacher']:.2f}x | {vs_ct2} | "
            f"{t['peak_memory_mb']:.0f} | {s['peak_memory_mb']:.0f} |"
        )
    return "\n".join(lines)


def small_models(folder: Path) -> tuple[str, str, str]:
    """A tiny random teacher and a dynamic-context student (whisper.cpp-shaped) and two synthetic clips."""
    import numpy as np
    import soundfile as sf
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

    from geodistill.models.loading import converted_dir, embedded_source

    processor = WhisperProcessor.from_pretrained(converted_dir(embedded_source("tiny.en")))
    paths = {}
    for role, dynamic in (("teacher", False), ("student", True)):
        torch.manual_seed(0)
        cfg = WhisperConfig(
            vocab_size=51864,
            d_model=64,
            encoder_layers=1,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=256,
            decoder_ffn_dim=256,
            max_target_positions=448,
            decoder_start_token_id=50257,
            pad_token_id=50256,
            bos_token_id=50257,
            eos_token_id=50256,
        )
        model = WhisperForConditionalGeneration(cfg)
        model.generation_config.max_length = 8
        if dynamic:
            model.config.geodistill_audio_context, model.config.geodistill_context_margin = "dynamic", 16
        model.save_pretrained(folder / role)
        processor.save_pretrained(folder / role)
        paths[role] = str(folder / role)
    rows = []
    for i, seconds in enumerate((1.5, 2.5)):
        t = np.arange(int(16000 * seconds)) / 16000
        sf.write(
            folder / f"c{i}.wav", (0.2 * np.sin(2 * np.pi * 200 * (i + 1) * t)).astype(np.float32), 16000
        )
        rows.append({"audio_filepath": f"c{i}.wav", "text": "a tone"})
    (folder / "clips.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return paths["teacher"], paths["student"], str(folder / "clips.jsonl")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="tiny.en")
    p.add_argument("--student", help="the student (run folder or model folder)")
    p.add_argument("--data", help="data spec with transcripts (the real test split)")
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--limit", type=int, default=None, help="the first N clips only")
    p.add_argument("--write", type=Path, help="markdown file whose engines section gets the table")
    p.add_argument("--json", type=Path, help="write the numbers here too")
    p.add_argument("--small", action="store_true", help="tiny random models, two clips (make test)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="geodistill-engines-small-") as tmp:
        if a.small:
            a.teacher, a.student, a.data = small_models(Path(tmp))
        elif not (a.student and a.data):
            p.error("--student and --data are needed (or --small)")
        result = run(a.teacher, a.student, a.data, available(a.engines), a.threads, a.limit)
    text = table(result)
    print(text)
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    if a.write:
        replace_section(a.write, text, MARK_START, MARK_END, "\n## Engines: teacher vs student\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
