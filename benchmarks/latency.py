"""Benchmark: where one clip's transcription time goes (batch 1), per model and engine, and peak memory at
batch 1 and 8.

    .venv/bin/python benchmarks/latency.py --models tiny.en:full tiny.en:dynamic runs/demo/run \
        --data runs/demo/corpus/test --limit 40 --write docs/benchmarks.md

A model is a spec (``tiny.en``, a run or model folder), optionally with ``:full`` or ``:dynamic`` to
override its stored audio context (``geodistill.models.context``). Each clip is transcribed greedily, one at
a time, after one untimed warm-up clip, and its time is split into:

- features: audio -> log-Mel (``decoding.whisper.features`` at the model's context), the same for every
  engine;
- encoder: one encoder pass (hf: forward hooks from conv1 to the final layer norm; ct2:
  ``Whisper.encode``; onnx: its encoder graph);
- decoder: every decoding step, the prompt's included, LM head included (hf: the decoder module + the
  ``proj_out`` LM head, also given on its own; ct2: ``Whisper.generate`` on the encoder's output; onnx: its
  two decoder graphs), reported per step (= per generated token, end-of-text included);
- rest: the engine's ``generate`` call minus the above (logits processors, the stopping checks, Python,
  tensor conversions).

RTF excludes the features, as ``geodistill evaluate``'s does. Peak memory is ``geodistill evaluate``'s
(process peak RSS, model included) at ``--batch-sizes`` (1 and 8), each its own process on the same clips;
the batch-1 run gives the WER and the clips that hit the token cap too. The load average before and after each
(model, engine) is recorded: compare rows of one run only on a shared machine. whisper.cpp decodes a
clip in one call with no hook between its parts, so it is not split here (``benchmarks/engines.py`` times it
whole).

``--small`` (what ``make test`` runs): the tiny random teacher (full context) and dynamic-context student of
``benchmarks/engines.py`` on two synthetic clips, nothing written unless ``--write`` is given.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from geodistill.data import BadSamples, load_audio, load_spec
from geodistill.decoding.engines import load_engine
from geodistill.decoding.speed import machine
from geodistill.decoding.whisper import features, generate_ids
from geodistill.markdown import replace_section
from geodistill.models import load_whisper
from geodistill.models.context import AUDIO_CONTEXTS, resolve_audio_context

ENGINES = {"hf": None, "ct2": "ctranslate2", "onnx": "onnxruntime"}
MARK_START, MARK_END = "<!-- latency:start -->", "<!-- latency:end -->"
HEADING = "\n## Latency: where a batch-1 clip's time goes, and peak memory at batch 1 and 8\n\n"


@dataclass
class Clock:
    """Accumulated seconds and calls of one part."""

    seconds: float = 0.0
    calls: int = 0
    _t0: float = field(default=0.0, repr=False)

    def start(self, *_: object) -> None:
        self._t0 = time.perf_counter()

    def stop(self, *_: object) -> None:
        self.seconds += time.perf_counter() - self._t0
        self.calls += 1

    def __enter__(self) -> Clock:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Split:
    """Where the time of ``clips`` batch-1 transcriptions went (seconds, summed over clips)."""

    features: Clock = field(default_factory=Clock)
    encoder: Clock = field(default_factory=Clock)
    decoder: Clock = field(default_factory=Clock)  # every step; for hf without the LM head
    lm_head: Clock | None = None  # hf only: the output projection, every step
    generate: Clock = field(default_factory=Clock)  # the whole generate_ids call
    steps: int = 0  # decoder steps (hf, onnx: calls; ct2: tokens + end of text)
    clips: int = 0
    audio_seconds: float = 0.0

    def decoding(self) -> float:
        return self.decoder.seconds + (self.lm_head.seconds if self.lm_head else 0.0)

    def row(self) -> dict:
        """Per-clip milliseconds (per step for the decoder), tokens per clip and the RTF."""
        n, steps = max(self.clips, 1), max(self.steps, 1)
        rest = self.generate.seconds - self.encoder.seconds - self.decoding()
        return {
            "clips": self.clips,
            "audio_seconds": self.audio_seconds,
            "features_ms": 1000 * self.features.seconds / n,
            "encoder_ms": 1000 * self.encoder.seconds / n,
            "decoder_ms_per_step": 1000 * self.decoding() / steps,
            "lm_head_ms_per_step": None if self.lm_head is None else 1000 * self.lm_head.seconds / steps,
            "steps_per_clip": self.steps / n,
            "rest_ms": 1000 * rest / n,
            "generate_ms": 1000 * self.generate.seconds / n,
            "total_ms": 1000 * (self.features.seconds + self.generate.seconds) / n,
            "rtf": self.generate.seconds / self.audio_seconds if self.audio_seconds else float("inf"),
        }


def hook_hf(model, split: Split) -> None:
    """Time an HF Whisper's encoder (conv1 in -> final layer norm out: the stock forward and
    ``context.encode`` alike), decoder and LM head with forward hooks."""
    encoder, decoder = model.get_encoder(), model.get_decoder()
    split.lm_head = Clock()
    encoder.conv1.register_forward_pre_hook(split.encoder.start)
    encoder.layer_norm.register_forward_hook(split.encoder.stop)
    decoder.register_forward_pre_hook(split.decoder.start)
    decoder.register_forward_hook(split.decoder.stop)
    model.proj_out.register_forward_pre_hook(split.lm_head.start)
    model.proj_out.register_forward_hook(split.lm_head.stop)


class TimedCt2:
    """``ctranslate2.models.Whisper`` with its ``generate`` run as ``encode`` + ``generate`` on the encoder's
    output (what it does inside), each timed into ``split``."""

    def __init__(self, inner, split: Split):
        self._inner, self._split = inner, split

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def generate(self, feats, prompts, **kwargs):
        with self._split.encoder:
            encoded = self._inner.encode(feats, to_cpu=False)
        with self._split.decoder:
            results = self._inner.generate(encoded, prompts, **kwargs)
        self._split.steps += sum(len(r.sequences_ids[0]) + 1 for r in results)
        return results


def timed(fn, clock: Clock, count: bool = False, split: Split | None = None):
    def run(*args, **kwargs):
        with clock:
            out = fn(*args, **kwargs)
        if count and split is not None:
            split.steps += 1
        return out

    return run


def instrument(model, engine: str) -> Split:
    """A fresh Split that ``model``'s encoder and decoder calls now report to."""
    split = Split()
    if engine == "hf":
        hook_hf(model, split)
    elif engine == "ct2":
        model.model = TimedCt2(model.model, split)
    else:  # onnx: the encoder graph, then the first decoder step and every later one
        model.encode = timed(model.encode, split.encoder)
        model._first = timed(model._first, split.decoder, True, split)
        model._step = timed(model._step, split.decoder, True, split)
    return split


def load(spec: str, engine: str):
    """(model, processor) of ``spec`` in ``engine`` on the CPU, in eval mode."""
    if engine == "hf":
        model, processor = load_whisper(spec, device="cpu")
        return model.eval(), processor
    model, processor, _ = load_engine(spec, "cpu", engine)
    return model, processor


@torch.inference_mode()
def split_times(spec: str, mode: str | None, engine: str, audios: list[np.ndarray]) -> tuple[Split, str]:
    """(where the time went, the audio context used) of ``spec`` in ``engine`` over ``audios``, batch 1."""
    model, processor = load(spec, engine)
    context = resolve_audio_context(model, mode)
    generate_ids(model, features(processor, audios[:1], context))  # warm-up (first-call allocations), untimed
    split = instrument(model, engine)
    for audio in audios:
        with split.features:
            feats = features(processor, [audio], context)
        with split.generate:
            generate_ids(model, feats)
        split.clips += 1
        split.audio_seconds += len(audio) / 16000
    if engine == "hf":
        split.steps = split.decoder.calls
    return split, context.mode


def peak_memory(spec: str, mode: str | None, engine: str, data: str, batch: int, limit: int | None) -> dict:
    """eval.json numbers of one ``geodistill evaluate`` process (peak RSS is per process)."""
    with tempfile.TemporaryDirectory(prefix="geodistill-latency-") as tmp:
        cmd = [sys.executable, "-m", "geodistill.cli", "evaluate", "--model", spec, "--data", data]
        cmd += ["--engine", engine, "--batch-size", str(batch), "--device", "cpu", "--out", tmp]
        cmd += (["--limit", str(limit)] if limit else []) + (["--audio-context", mode] if mode else [])
        env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{spec} --engine {engine} --batch-size {batch}: {done.stderr.strip()[-500:]}")
        r = json.loads((Path(tmp) / "eval.json").read_text())
    return {k: r[k] for k in ("peak_memory_mb", "wer", "hit_token_cap", "n_utterances", "rtf")}


def parse_model(text: str) -> tuple[str, str | None]:
    """``spec[:full|:dynamic]`` -> (spec, context override or None)."""
    spec, sep, mode = text.rpartition(":")
    return (spec, mode) if sep and mode in AUDIO_CONTEXTS else (text, None)


def clips(data: str, limit: int | None) -> list[np.ndarray]:
    """The first ``limit`` clips of ``data`` that load and last at most 30 s, as ``evaluate`` takes them."""
    utts = load_spec(data, bad=BadSamples(None), max_duration=30.0)
    audios = [load_audio(u) for u in (utts[:limit] if limit else utts)]
    return [a for a in audios if 0 < a.size <= 30 * 16000]


def run(models: list[str], data: str, engines: list[str], batches: list[int], limit: int | None) -> dict:
    audios = clips(data, limit)
    if not audios:
        raise SystemExit(f"{data}: no clip of 30 s or less")
    rows = []
    for text in models:
        spec, mode = parse_model(text)
        for engine in engines:
            before = os.getloadavg()[0]
            split, used = split_times(spec, mode, engine, audios)
            memory = {b: peak_memory(spec, mode, engine, data, b, limit) for b in batches}
            rows.append(
                {
                    "model": spec,
                    "audio_context": used,
                    "engine": engine,
                    **split.row(),
                    "peak_memory_mb": {str(b): m["peak_memory_mb"] for b, m in memory.items()},
                    "evaluate": {str(b): m for b, m in memory.items()},
                    "load_average": [before, os.getloadavg()[0]],
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {
        "data": data,
        "clips": len(audios),
        "audio_seconds": sum(a.size for a in audios) / 16000,
        "threads": torch.get_num_threads(),
        "batch_sizes": batches,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": "python benchmarks/latency.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    }


def _cell(value: float | None, fmt: str = ".1f") -> str:
    return "-" if value is None else format(value, fmt)


def table(result: dict) -> str:
    batches = result["batch_sizes"]
    b1 = "1" if 1 in batches else str(batches[0])
    lines = [
        f"`{result['command']}`  ",
        f"`{result['data']}`: {result['clips']} clips, {result['audio_seconds']:.1f} s of audio; batch 1, "
        f"greedy, {result['threads']} thread(s); {result['machine']}; {result['date']}.",
        "",
        "| model | context | engine | features ms | encoder ms | decoder ms / token | of which LM head "
        "| tokens / clip | rest ms | total ms / clip | RTF | WER | token-cap hits "
        + "".join(f"| peak MB batch {b} " for b in batches)
        + "| load before/after |",
        "|---|---|---|" + "---:|" * (10 + len(batches)) + "---|",
    ]
    for r in result["rows"]:
        ev = r["evaluate"][b1]
        cells = [
            f"`{r['model']}`",
            r["audio_context"],
            r["engine"],
            _cell(r["features_ms"]),
            _cell(r["encoder_ms"]),
            _cell(r["decoder_ms_per_step"], ".2f"),
            _cell(r["lm_head_ms_per_step"], ".2f"),
            _cell(r["steps_per_clip"]),
            _cell(r["rest_ms"]),
            _cell(r["total_ms"]),
            _cell(r["rtf"], ".3f"),
            f"{100 * ev['wer']:.1f} %",
            str(ev["hit_token_cap"]),
            *(f"{r['peak_memory_mb'][str(b)]:.0f}" for b in batches),
            "{:.1f}/{:.1f}".format(*r["load_average"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Per clip, batch 1, after a warm-up clip: features = log-Mel extraction; encoder = one encoder pass; "
        "decoder = every step (prompt included) with its LM head, per step; rest = the engine's generate "
        "minus encoder and decoder. RTF = generate time / audio (features excluded, as `evaluate`). WER, "
        f"token-cap hits and peak memory (process peak RSS, model included) come from `geodistill evaluate` "
        f"on the same clips, one process per batch size; WER and cap hits at batch {b1}.",
    ]
    return "\n".join(lines)


def small_models(folder: Path) -> tuple[str, str, str]:
    """benchmarks/engines.py's tiny random teacher and dynamic-context student and its two clips."""
    spec = importlib.util.spec_from_file_location("engines_bench", Path(__file__).with_name("engines.py"))
    assert spec is not None and spec.loader is not None
    engines = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(engines)
    return engines.small_models(folder)


def available(engines: list[str]) -> list[str]:
    """The engines whose package is installed (hf always)."""
    return [e for e in engines if ENGINES[e] is None or importlib.util.find_spec(ENGINES[e]) is not None]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models",
        nargs="+",
        default=["tiny.en:full", "tiny.en:dynamic"],
        help="model specs, each optionally :full or :dynamic (the audio context to force)",
    )
    p.add_argument("--data", help="data spec with transcripts (the real test split)")
    p.add_argument("--limit", type=int, default=None, help="the first N clips only")
    p.add_argument("--engines", nargs="+", default=["hf", "ct2"], choices=list(ENGINES))
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="peak memory at each")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--write", type=Path, help="markdown file whose latency section gets the table")
    p.add_argument("--json", type=Path, help="write the numbers here too")
    p.add_argument("--small", action="store_true", help="tiny random models, two clips (make test)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 -- only the script silences it

    hf_logging.set_verbosity_error()
    with tempfile.TemporaryDirectory(prefix="geodistill-latency-small-") as tmp:
        if a.small:
            teacher, student, a.data = small_models(Path(tmp))
            a.models = [teacher, student]
        elif not a.data:
            p.error("--data is needed (or --small)")
        result = run(a.models, a.data, available(a.engines), a.batch_sizes, a.limit)
    text = table(result)
    print(text)
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    if a.write:
        replace_section(a.write, text, MARK_START, MARK_END, HEADING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
