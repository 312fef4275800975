"""``geodistill evaluate``: WER, CER, real-time factor and peak memory of a model on a data spec.

Writes, when ``out`` is given:
- ``eval.json``: every number plus what produced it (model, device, threads, batch, beam, versions, date);
- ``eval.md``: the headline numbers as a small table;
- ``utterances.jsonl``: one row per decoded utterance (reference, hypothesis, error counts, WER);
- ``bad_samples.jsonl``: the utterances this run skipped, with the reason (started afresh each run).

Compute time covers ``model.generate`` only (encoder + KV-cached decoding, device-synchronised). Audio
decoding/resampling and log-Mel extraction are timed separately (``feature_seconds``) and are not in the
RTF, so the RTF compares models rather than audio pipelines.

Utterances are decoded longest first (by their listed duration) so each batch pads little, and reported in
input order. The audio context (full 30 s, or the clip + a margin: ``geodistill.models.context``) is the
model's stored one unless ``audio_context`` / ``context_margin`` override it; eval.json records it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from geodistill.data import BadSamples, Utterance, load_audio, load_spec
from geodistill.errors import DataError
from geodistill.evaluate.engines import engine_fields
from geodistill.evaluate.longform import Decoding, decode_audios, warm_up
from geodistill.evaluate.speed import MemoryMeter, Timer, count_params, model_disk_mb, real_time_factor
from geodistill.evaluate.transcribe import (
    CHUNK_SECONDS,
    SAMPLE_RATE,
    default_max_new_tokens,
    features,
    generate_ids,
    load_model,
    longest_first,
)
from geodistill.evaluate.wer import wer_scores
from geodistill.models.context import AudioContext, check_override, get_audio_context, resolve_audio_context
from geodistill.outdir import output_dir
from geodistill.versions import package_versions

TIMING = (
    "model.generate only (encoder + KV-cached decoding), device-synchronised; audio decoding and "
    "log-Mel extraction excluded (feature_seconds)"
)


@dataclass
class Decoded:
    """Transcripts of the usable utterances of a data set, with what it cost to make them."""

    utterances: list[Utterance] = field(default_factory=list)  # decoded utterances, in input order
    hypotheses: list[str] = field(default_factory=list)  # transcript of each, stripped
    audio_seconds: list[float] = field(default_factory=list)  # length of each clip
    compute: Timer = field(default_factory=Timer)  # time inside model.generate
    feature: Timer = field(default_factory=Timer)  # time decoding audio and extracting log-Mel features
    n_tokens: int = 0  # generated text tokens (special tokens and padding excluded)
    stats: dict = field(default_factory=dict)  # long clips decoded, short clips that hit the token cap
    warmup: dict | None = None  # the untimed warm-up batch (utterances, seconds), when one ran


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off for decoding; a model that was training (the loop's student) is put back afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _read_batch(
    utts: Sequence[Utterance], bad: BadSamples, long_form: bool = False
) -> tuple[list[int], list[np.ndarray]]:
    """Positions in ``utts`` of the clips that decode, and the clips; the others go to ``bad`` (which
    raises in strict mode). Clips over 30 s are skipped unless ``long_form``."""
    kept, audios = [], []
    for i, utt in enumerate(utts):
        try:
            audio = load_audio(utt)
        except DataError as e:
            bad.add(utt, getattr(e, "reason", str(e)))  # BadSampleError's message already names the file
            continue
        if audio.size == 0:
            bad.add(utt, "empty audio")
            continue
        if not long_form and audio.size > CHUNK_SECONDS * SAMPLE_RATE:  # would be cut at 30 s
            bad.add(
                utt, f"{audio.size / SAMPLE_RATE:.1f} s is longer than Whisper's {CHUNK_SECONDS} s window"
            )
            continue
        kept.append(i)
        audios.append(audio)
    return kept, audios


def decode(
    model,
    processor,
    utts: Sequence[Utterance],
    bad: BadSamples,
    batch_size: int = 8,
    language: str | None = None,
    beam_size: int = 1,
    max_new_tokens: int | None = None,
    context: AudioContext | None = None,
    long_form: bool = False,
    fallback: bool = False,
    warmup: bool = False,
) -> Decoded:
    """Transcribe ``utts`` in batches of ``batch_size``, skipping (and recording) unreadable audio.

    Batches are formed longest first (listed durations); the results are in input order. ``context``
    None means the model's stored audio context. ``long_form`` decodes clips over 30 s (see
    geodistill.evaluate.longform), ``fallback`` adds the temperature fallback, ``warmup`` decodes the
    first batch once untimed before timing starts.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    context = context or get_audio_context(model)
    special = torch.tensor(processor.tokenizer.all_special_ids)
    out = Decoded(compute=Timer(model.device), feature=Timer())
    rows: dict[int, tuple[str, float]] = {}  # input position -> (hypothesis, seconds)
    order = longest_first([u.duration or 0.0 for u in utts])
    how = Decoding(language, beam_size, max_new_tokens, fallback)
    with eval_mode(model):
        if warmup:
            first = [utts[i] for i in order[:batch_size]]
            out.warmup = warm_up(
                model, processor, first, how, long_form, lambda clips: features(processor, clips, context)
            )
        for start in range(0, len(order), batch_size):
            with out.feature:
                batch = order[start : start + batch_size]
                positions, audios = _read_batch([utts[i] for i in batch], bad, long_form)
                kept = [batch[p] for p in positions]
                if not kept:
                    continue
            names = [utts[i].id for i in kept]
            ids = decode_audios(
                model,
                processor,
                audios,
                how,
                out.feature,
                out.compute,
                generate_ids,
                featurize=lambda clips, names=names: features(processor, clips, context, names),
            )
            out.n_tokens += sum(int((~torch.isin(i, special.to(i.device))).sum()) for i in ids)
            texts = processor.tokenizer.batch_decode([i.tolist() for i in ids], skip_special_tokens=True)
            rows.update(
                {i: (t.strip(), len(a) / SAMPLE_RATE) for i, t, a in zip(kept, texts, audios, strict=True)}
            )
    for i in sorted(rows):
        out.utterances.append(utts[i])
        out.hypotheses.append(rows[i][0])
        out.audio_seconds.append(rows[i][1])
    out.stats = how.stats
    return out


def _describe(spec, fallback: str) -> str:
    return str(spec) if isinstance(spec, str | Path) else fallback


def _cost(model, device: torch.device, decoded: Decoded, peak_mb: float) -> dict:
    """Speed, memory and size numbers of one decoding run."""
    audio_s, compute_s = sum(decoded.audio_seconds), decoded.compute.seconds
    cuda = device.type == "cuda"
    return {
        "rtf": real_time_factor(compute_s, audio_s),
        "audio_seconds": audio_s,
        "compute_seconds": compute_s,
        "feature_seconds": decoded.feature.seconds,
        "timing": TIMING,
        "tokens_per_second": decoded.n_tokens / compute_s if compute_s > 0 else 0.0,
        "peak_memory_mb": peak_mb,
        "peak_memory_kind": "torch.cuda.max_memory_allocated"
        if cuda
        else "process peak RSS (model included)",
        "params": count_params(model),
        "disk_mb": model_disk_mb(model),
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def load_utterances(
    data, bad: BadSamples, limit: int | None = None, require_text: bool = True, long_form: bool = False
) -> list[Utterance]:
    """Utterances of a data spec (or a list of them), the first ``limit`` (>= 1) only when given.
    Spec items over 30 s are skipped unless ``long_form``."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for all), got {limit}")
    most = float("inf") if long_form else float(CHUNK_SECONDS)
    if isinstance(data, str | Path):
        utts = load_spec(data, bad=bad, require_text=require_text, max_duration=most)
    else:
        utts = list(data)
    return utts[:limit] if limit is not None else utts


def evaluate(
    model,
    data,
    out: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "auto",
    language: str | None = None,
    beam_size: int = 1,
    strict: bool = False,
    max_new_tokens: int | None = None,
    audio_context: str | None = None,
    context_margin: int | None = None,
    engine: str = "hf",
    assistant: str | None = None,
    long_form: bool = False,
    fallback: bool = False,
    warmup: bool = False,
) -> dict:
    """Score ``model`` (a spec or a loaded (model, processor)) on ``data`` (a spec or a list of Utterance).

    Returns the eval.json dict (see the module docstring); writes the files under ``out`` when given.
    ``audio_context`` (full | dynamic) and ``context_margin`` override the model's stored audio context.
    Raises DataError when no utterance is usable (or at the first bad one with ``strict``).
    """
    check_override(audio_context, context_margin)
    out_dir = output_dir(out, "evaluate") if out is not None else None
    if out_dir is not None:  # this run's skips only, as eval.json counts them (not a rerun's doubled list)
        (out_dir / "bad_samples.jsonl").unlink(missing_ok=True)
    bad = BadSamples(out_dir / "bad_samples.jsonl" if out_dir else None, strict=strict)
    loaded, processor, dev = load_model(model, device, engine, assistant)
    utts = load_utterances(data, bad, limit, long_form=long_form)
    context = resolve_audio_context(loaded, audio_context, context_margin)
    meter = MemoryMeter(torch.device(dev))
    meter.start()
    decoded = decode(
        loaded,
        processor,
        utts,
        bad,
        batch_size,
        language,
        beam_size,
        max_new_tokens,
        context,
        long_form,
        fallback,
        warmup,
    )
    peak_mb = meter.peak_mb()
    if not decoded.utterances:
        raise DataError(f"{_describe(data, 'data')}: no usable utterances ({bad.count} skipped)")
    refs = [u.text or "" for u in decoded.utterances]
    scores = wer_scores(refs, decoded.hypotheses, language=language or "en")
    result = {
        "model": _describe(model, type(loaded).__name__ + " (in memory)"),
        "data": _describe(data, f"{len(utts)} utterances (in memory)"),
        **{k: scores[k] for k in ("wer", "wer_raw", "cer", "n_ref_words")},
        **_cost(loaded, torch.device(dev), decoded, peak_mb),
        "n_utterances": len(decoded.utterances),
        "n_skipped": bad.count,
        "batch_size": batch_size,
        "beam_size": beam_size,
        "max_new_tokens": max_new_tokens or default_max_new_tokens(loaded),
        "audio_context": context.mode,
        "context_margin": context.margin if context.dynamic else None,
        "language": language,
        "limit": limit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        **engine_fields(loaded),
        "long_form": long_form,
        "temperature_fallback": fallback,
        **decoded.stats,
        "warmup": decoded.warmup,
    }
    if out_dir is not None:
        _write_outputs(out_dir, result, decoded, refs, scores["per_utterance"])
    return result


def _write_outputs(
    out_dir: Path, result: dict, decoded: Decoded, refs: list[str], per_utt: list[dict]
) -> None:
    (out_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "eval.md").write_text(eval_markdown(result))
    with open(out_dir / "utterances.jsonl", "w") as f:
        for utt, ref, hyp, secs, row in zip(
            decoded.utterances, refs, decoded.hypotheses, decoded.audio_seconds, per_utt, strict=True
        ):
            errors = {k: row[k] for k in ("substitutions", "deletions", "insertions", "hits")}
            line = {
                "id": utt.id,
                "reference": ref,
                "hypothesis": hyp,
                "audio_seconds": secs,
                "errors": errors,
                "ref_words": row["ref_words"],
                "wer": row["wer"],
            }
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def _context_text(r: dict) -> str:
    """ "full (30 s)" or "dynamic (clip + N positions)"; eval.json files from before the option say full."""
    if r.get("audio_context", "full") == "full":
        return "full (30 s)"
    return f"dynamic (clip + {r['context_margin']} encoder positions)"


def eval_markdown(r: dict) -> str:
    """The headline numbers of an eval.json dict as a Markdown table."""
    rows = [
        ("WER (normalised)", f"{100 * r['wer']:.2f} %"),
        ("WER (raw)", f"{100 * r['wer_raw']:.2f} %"),
        ("CER (normalised)", f"{100 * r['cer']:.2f} %"),
        ("real-time factor", f"{r['rtf']:.4f}"),
        ("tokens / s", f"{r['tokens_per_second']:.1f}"),
        ("peak memory", f"{r['peak_memory_mb']:.0f} MB ({r['peak_memory_kind']})"),
        ("parameters", f"{r['params'] / 1e6:.2f} M ({r['disk_mb']:.1f} MB {r['dtype']})"),
        (
            "utterances",
            f"{r['n_utterances']} ({r['n_skipped']} skipped), {r['audio_seconds']:.1f} s of audio",
        ),
        ("compute", f"{r['compute_seconds']:.2f} s on {r['device']}, {r['threads']} threads"),
        (
            "decoding",
            f"batch {r['batch_size']}, beam {r['beam_size']}, language {r['language'] or 'default'}",
        ),
        ("audio context", _context_text(r)),
    ]
    lines = [f"# Evaluation of `{r['model']}` on `{r['data']}`", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", f"Timing: {r['timing']}.", f"Date: {r['date']}.", ""]
    return "\n".join(lines)
