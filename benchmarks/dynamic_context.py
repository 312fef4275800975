"""Benchmark: one Whisper at full (30 s) vs dynamic (clip + margin) audio context, same process, same threads.

    .venv/bin/python benchmarks/dynamic_context.py --model tiny.en --rounds 3 --write docs/benchmarks.md

Synthetic clips (seeded noise) of 2, 5, 10, 20 and 30 s, batch 1: the encoder alone (stock
``WhisperEncoder`` over 3000 frames vs ``geodistill.models.context.encode`` over the clip + margin), and
end to end (log-Mel features excluded: encoder + ``generate`` forced to exactly ``--tokens`` new tokens, so
both contexts decode the same number of steps and differ only in the encoder and the cross-attention
length). With ``--data SPEC`` (real recordings with transcripts; ``system``: the LibriVox clips of
pocketsphinx-testdata and the alsa-utils voice prompts), every clip is also transcribed greedily, batch 1,
at both contexts: total encoder and end-to-end time, RTF, WER, and how many
transcripts are identical. Rounds interleave the two contexts (alternating which goes first); medians
over rounds are reported with the torch thread count and the load average before and after each round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from geodistill.decoding.speed import machine
from geodistill.decoding.whisper import features, generate_ids
from geodistill.markdown import replace_section as write_section
from geodistill.models import load_whisper
from geodistill.models.context import AudioContext, encode

MARK_START, MARK_END = "<!-- dynamic_context:start -->", "<!-- dynamic_context:end -->"
MODES = ("full", "dynamic")
REAL_NOTE = (
    "A stock model at dynamic context was never trained on short contexts: on some clips it loops until",
    "the token cap (224), which inflates both its WER and its end-to-end time; a student distilled from",
    "the full-context teacher at dynamic context (issue 16) is what this option is for.",
)
SYSTEM = " (pocketsphinx-testdata's LibriVox clips + the alsa-utils voice prompts)"


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


@torch.inference_mode()
def encoder_seconds(model, feats: torch.Tensor) -> float:
    """Seconds of one encoder pass over ``feats`` (B, n_mels, F): the stock encoder at 3000 frames."""
    enc = model.get_encoder()
    run = (lambda: enc(feats)) if feats.shape[-1] == 3000 else (lambda: encode(enc, feats))
    return timed(run)[0]


@torch.inference_mode()
def forced_seconds(model, feats: torch.Tensor, tokens: int) -> float:
    """Seconds of encoder + generate forced to exactly ``tokens`` new tokens (greedy, KV cache)."""
    kwargs = {"min_new_tokens": tokens, "max_new_tokens": tokens, "do_sample": False, "num_beams": 1}
    if feats.shape[-1] == 3000:
        return timed(lambda: model.generate(feats, **kwargs))[0]
    return timed(lambda: model.generate(encoder_outputs=encode(model.get_encoder(), feats), **kwargs))[0]


def synthetic_round(model, processor, lengths, args, rnd: int) -> dict:
    """{(seconds, mode): {"frames", "encoder", "e2e"}} for one round, the two contexts interleaved."""
    rng = np.random.default_rng(0)
    out = {}
    for seconds in lengths:
        audio = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
        order = MODES if rnd % 2 == 0 else MODES[::-1]
        for mode in order:
            feats = features(processor, [audio] * args.batch, AudioContext(mode, args.margin))
            out[(seconds, mode)] = {
                "frames": feats.shape[-1],
                "encoder": encoder_seconds(model, feats),
                "e2e": forced_seconds(model, feats, args.tokens),
            }
    return out


def real_round(model, processor, utts, audios, args, rnd: int) -> dict:
    """{mode: {"encoder", "e2e", "hyps"}}: every clip at batch 1, greedy, natural length."""
    out = {mode: {"encoder": 0.0, "e2e": 0.0, "hyps": []} for mode in MODES}
    for k, audio in enumerate(audios):
        order = MODES if (rnd + k) % 2 == 0 else MODES[::-1]
        for mode in order:
            feats = features(processor, [audio], AudioContext(mode, args.margin))
            out[mode]["encoder"] += encoder_seconds(model, feats)
            secs, ids = timed(lambda f=feats: generate_ids(model, f))
            out[mode]["e2e"] += secs
            out[mode]["hyps"].append(processor.tokenizer.decode(ids[0], skip_special_tokens=True).strip())
    return out


ALSA = Path("/usr/share/sounds/alsa")
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def system_manifest(folder: Path) -> str:
    """A manifest of the real speech Debian packages install: LibriVox clips + alsa-utils voice prompts."""
    rows = []
    if (LIBRIVOX / "transcription").is_file():
        for line in (LIBRIVOX / "transcription").read_text().splitlines():
            m = re.fullmatch(r"<s> (.*) </s> \((.*)\)", line.strip())
            if m and (LIBRIVOX / f"{m[2]}.wav").is_file():
                rows.append({"audio_filepath": str(LIBRIVOX / f"{m[2]}.wav"), "text": m[1]})
    for wav in sorted(ALSA.glob("*_*.wav")):  # Front_Center.wav ... (Noise.wav is not speech)
        rows.append({"audio_filepath": str(wav), "text": wav.stem.replace("_", " ").lower()})
    if not rows:
        raise SystemExit("--data system: install pocketsphinx-testdata and/or alsa-utils")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "real.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(folder / "real.jsonl")


def load_real(spec: str) -> tuple[list, list[np.ndarray]]:
    from geodistill.data import BadSamples, load_audio, load_spec

    if spec == "system":
        spec = system_manifest(Path(tempfile.mkdtemp(prefix="dynamic-context-")))

    utts = [u for u in load_spec(spec, bad=BadSamples(None)) if (u.duration or 0) <= 30]
    return utts, [load_audio(u) for u in utts]


def median(rounds: list[dict], key, field: str) -> float:
    return statistics.median(r[key][field] for r in rounds)


def synthetic_table(rounds: list[dict], lengths, args) -> list[str]:
    lines = [
        "| clip s | encoder positions full / dynamic | encoder ms full | dynamic | encoder speed-up "
        f"| encoder + {args.tokens} tokens ms full | dynamic | end-to-end speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in lengths:
        ef, ed = (1000 * median(rounds, (s, m), "encoder") for m in MODES)
        tf, td = (1000 * median(rounds, (s, m), "e2e") for m in MODES)
        pf, pd = (rounds[0][(s, m)]["frames"] // 2 for m in MODES)
        cells = [f"{s:g}", f"{pf} / {pd}", f"{ef:.1f}", f"{ed:.1f}", f"{ef / ed:.2f}x"]
        cells += [f"{tf:.1f}", f"{td:.1f}", f"{tf / td:.2f}x"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def real_table(rounds: list[dict], utts, audios, spec: str) -> list[str]:
    from geodistill.decoding.wer import wer_scores

    audio_s = sum(len(a) for a in audios) / 16000
    refs = [u.text or "" for u in utts]
    lines = [
        f"Real recordings: `{spec}`{SYSTEM if spec == 'system' else ''}, {len(audios)} clips, "
        f"{audio_s:.1f} s of audio, batch 1, greedy.",
        "",
        "| context | encoder s | end-to-end s | RTF | WER | transcripts identical to full |",
        "|---|---|---|---|---|---|",
    ]
    full_hyps = rounds[0]["full"]["hyps"]
    for mode in MODES:
        enc, e2e = median(rounds, mode, "encoder"), median(rounds, mode, "e2e")
        hyps = rounds[0][mode]["hyps"]
        wer = f"{100 * wer_scores(refs, hyps)['wer']:.1f} %" if all(refs) else "n/a"
        same = sum(a == b for a, b in zip(hyps, full_hyps, strict=True))
        lines.append(f"| {mode} | {enc:.2f} | {e2e:.2f} | {e2e / audio_s:.3f} | {wer} | {same}/{len(hyps)} |")
    return lines


def markdown(args, synth: list[dict], real: list[dict], loads: list[str], real_data) -> str:
    command = "python benchmarks/dynamic_context.py " + " ".join(sys.argv[1:])
    lines = [
        "## Dynamic audio context: the encoder over the clip + a margin instead of 30 s",
        "",
        "`benchmarks/dynamic_context.py` times one model at full context (3000 Mel frames, 1500 encoder",
        f"positions) and at dynamic context (the clip + {args.margin} positions,",
        "`geodistill.models.context`) in one process, rounds interleaved. Synthetic clips are seeded noise,",
        f"batch {args.batch}; end to end is the encoder + `generate` forced to {args.tokens} new tokens",
        "(the same decoding work at both contexts but for the cross-attention length); log-Mel extraction is",
        "excluded. Real recordings (when given) are transcribed greedily at their natural length.",
        "The model here is not trained for short contexts: this measures cost, not accuracy.",
        "",
        f"Command: `{command}`  ",
        f"Model: `{args.model}`. Machine: {machine()}, {time.strftime('%Y-%m-%d')}.  ",
        f"Medians of {args.rounds} rounds; load average before/after each round: {', '.join(loads)}.",
        "",
        *synthetic_table(synth, args.lengths, args),
        "",
        "A 30-s clip has no room for a margin: both contexts run the stock encoder over 1500 positions, so",
        "that row's difference is this machine's noise floor. What remains end to end at short clips is the",
        "decoding loop (per-token cost of `generate`), which the encoder's context does not change.",
    ]
    if real:
        lines += ["", *real_table(real, *real_data, args.data), "", *REAL_NOTE]
    return "\n".join(lines)


def replace_section(path: Path, text: str) -> None:
    """Put ``text`` between this benchmark's markers in ``path``."""
    write_section(path, text, MARK_START, MARK_END)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny.en")
    p.add_argument("--lengths", type=float, nargs="+", default=[2, 5, 10, 20, 30])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--margin", type=int, default=64, help="dynamic: encoder positions after the clip")
    p.add_argument("--tokens", type=int, default=20, help="synthetic: new tokens forced per clip")
    p.add_argument("--batch", type=int, default=1, help="synthetic: copies of the clip per batch")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument(
        "--data",
        default=None,
        help="real recordings: a data spec with transcripts, or 'system' (the LibriVox clips of "
        "pocketsphinx-testdata + the alsa-utils voice prompts)",
    )
    p.add_argument("--write", type=Path, default=None, help="replace/append the section in this file")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model, processor = load_whisper(args.model, device="cpu")
    real_data = load_real(args.data) if args.data else None
    synth, real, loads = [], [], []
    synthetic_round(model, processor, args.lengths[:1], args, 0)  # warm-up (allocator, kernels)
    for rnd in range(args.rounds):
        before = os.getloadavg()[0]
        synth.append(synthetic_round(model, processor, args.lengths, args, rnd))
        if real_data:
            real.append(real_round(model, processor, *real_data, args, rnd))
        loads.append(f"{before:.1f}/{os.getloadavg()[0]:.1f}")
    text = markdown(args, synth, real, loads, real_data)
    print(text)
    if args.write:
        replace_section(args.write, text)


if __name__ == "__main__":
    main()
