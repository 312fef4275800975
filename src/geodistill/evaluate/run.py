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

A CTC student (``family: ctc`` in eval.json) is decoded by ``geodistill.evaluate.ctc``: the same files,
scores and cost numbers; compute covers its forward + greedy best path, each clip at its own length.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from geodistill.data import BadSamples, Utterance, load_spec
from geodistill.errors import DataError
from geodistill.evaluate import ctc
from geodistill.evaluate.batches import Decoded, decode_batches
from geodistill.evaluate.engines import engine_fields
from geodistill.evaluate.longform import Decoding, decode_audios
from geodistill.evaluate.speed import MemoryMeter, Timer, count_params, model_disk_mb, real_time_factor
from geodistill.evaluate.transcribe import (
    CHUNK_SECONDS,
    default_max_new_tokens,
    features,
    generate_ids,
    load_model,
)
from geodistill.evaluate.wer import wer_scores
from geodistill.models.context import AudioContext, check_override, get_audio_context, resolve_audio_context
from geodistill.outdir import output_dir
from geodistill.versions import package_versions

TIMING = (
    "model.generate only (encoder + KV-cached decoding), device-synchronised; audio decoding and "
    "log-Mel extraction excluded (feature_seconds)"
)


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
    """Transcribe ``utts`` with a Whisper model in batches of ``batch_size``, skipping (and recording)
    unreadable audio (``geodistill.evaluate.batches.decode_batches``: longest first, input order out).

    ``context`` None means the model's stored audio context. ``long_form`` decodes clips over 30 s (see
    geodistill.evaluate.longform), ``fallback`` adds the temperature fallback, ``warmup`` decodes the
    first batch once untimed before timing starts.
    """
    context = context or get_audio_context(model)
    special = torch.tensor(processor.tokenizer.all_special_ids)
    how = Decoding(language, beam_size, max_new_tokens, fallback)

    def texts(audios: list[np.ndarray], names: list[str], out: Decoded) -> list[str]:
        ids = decode_audios(
            model,
            processor,
            audios,
            how,
            out.feature,
            out.compute,
            generate_ids,
            featurize=lambda clips: features(processor, clips, context, names),
        )
        out.n_tokens += sum(int((~torch.isin(i, special.to(i.device))).sum()) for i in ids)
        return processor.tokenizer.batch_decode([i.tolist() for i in ids], skip_special_tokens=True)

    def warm(audios: list[np.ndarray]) -> None:  # a scratch Decoding: the warm-up counts no statistics
        scratch = Decoding(language, beam_size, max_new_tokens, fallback)
        decode_audios(
            model,
            processor,
            audios,
            scratch,
            Timer(),
            Timer(model.device),
            featurize=lambda clips: features(processor, clips, context),
        )

    out = Decoded(compute=Timer(model.device), feature=Timer())
    decode_batches(model, utts, bad, batch_size, texts, out, long_form, warm=warm if warmup else None)
    out.stats = how.stats
    return out


def _describe(spec, fallback: str) -> str:
    return str(spec) if isinstance(spec, str | Path) else fallback


def _cost(model, device: torch.device, decoded: Decoded, peak_mb: float, timing: str) -> dict:
    """Speed, memory and size numbers of one decoding run (``timing``: what the compute time covers)."""
    audio_s, compute_s = sum(decoded.audio_seconds), decoded.compute.seconds
    cuda = device.type == "cuda"
    tokens = decoded.n_tokens
    return {
        "rtf": real_time_factor(compute_s, audio_s),
        "audio_seconds": audio_s,
        "compute_seconds": compute_s,
        "feature_seconds": decoded.feature.seconds,
        "timing": timing,
        "tokens_per_second": None if tokens is None else tokens / compute_s if compute_s > 0 else 0.0,
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


def _whisper_fields(model, beam_size: int, max_new_tokens: int | None, context: AudioContext) -> dict:
    """eval.json fields of a Whisper decoding: beam, token cap, audio context, engine (CT2's sizes)."""
    return {
        "beam_size": beam_size,
        "max_new_tokens": max_new_tokens or default_max_new_tokens(model),
        "audio_context": context.mode,
        "context_margin": context.margin if context.dynamic else None,
        **engine_fields(model),
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
    family = "ctc" if ctc.is_ctc(model) else "seq2seq"
    if family == "ctc":  # Whisper's decoding options, refused before anything loads
        ctc.check_options(
            engine, assistant, beam_size, fallback, audio_context, context_margin, max_new_tokens
        )
    out_dir = output_dir(out, "evaluate") if out is not None else None
    if out_dir is not None:  # this run's skips only, as eval.json counts them (not a rerun's doubled list)
        (out_dir / "bad_samples.jsonl").unlink(missing_ok=True)
    bad = BadSamples(out_dir / "bad_samples.jsonl" if out_dir else None, strict=strict)
    loaded, processor, dev = load_model(model, device, engine, assistant)
    long_form = long_form and family != "ctc"  # a CTC student takes up to 30 s: longer clips are skipped
    utts = load_utterances(data, bad, limit, long_form=long_form)
    meter = MemoryMeter(torch.device(dev))
    meter.start()
    if family == "ctc":
        decoded = ctc.decode_ctc(loaded, processor, utts, bad, batch_size, warmup)
        decoding, timing = ctc.eval_fields(), ctc.TIMING
    else:
        context = resolve_audio_context(loaded, audio_context, context_margin)
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
        decoding, timing = _whisper_fields(loaded, beam_size, max_new_tokens, context), TIMING
        decoding.update(long_form=long_form, temperature_fallback=fallback)
    peak_mb = meter.peak_mb()
    if not decoded.utterances:
        raise DataError(f"{_describe(data, 'data')}: no usable utterances ({bad.count} skipped)")
    refs = [u.text or "" for u in decoded.utterances]
    scores = wer_scores(refs, decoded.hypotheses, language=language or "en")
    result = {
        "model": _describe(model, type(loaded).__name__ + " (in memory)"),
        "data": _describe(data, f"{len(utts)} utterances (in memory)"),
        "family": family,
        **{k: scores[k] for k in ("wer", "wer_raw", "cer", "n_ref_words")},
        **_cost(loaded, torch.device(dev), decoded, peak_mb, timing),
        "n_utterances": len(decoded.utterances),
        "n_skipped": bad.count,
        "batch_size": batch_size,
        "language": language,
        "limit": limit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        **decoding,
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
    """ "full (30 s)", "dynamic (clip + N positions)" or a CTC student's "each clip at its own length";
    eval.json files from before the option say full."""
    mode = r.get("audio_context", "full")
    if mode == "full":
        return "full (30 s)"
    if mode == ctc.AUDIO_CONTEXT:
        return "each clip at its own length (no 30-s padding)"
    return f"dynamic (clip + {r['context_margin']} encoder positions)"


def _decoding_text(r: dict) -> str:
    if r.get("family") == "ctc":
        return f"{r['decoding']}, batch {r['batch_size']}; hit_token_cap: {r['hit_token_cap_note']}"
    return f"batch {r['batch_size']}, beam {r['beam_size']}, language {r['language'] or 'default'}"


def eval_markdown(r: dict) -> str:
    """The headline numbers of an eval.json dict as a Markdown table."""
    rows = [
        ("WER (normalised)", f"{100 * r['wer']:.2f} %"),
        ("WER (raw)", f"{100 * r['wer_raw']:.2f} %"),
        ("CER (normalised)", f"{100 * r['cer']:.2f} %"),
        ("real-time factor", f"{r['rtf']:.4f}"),
        ("tokens / s", ctc.NO_TOKENS if r["tokens_per_second"] is None else f"{r['tokens_per_second']:.1f}"),
        ("peak memory", f"{r['peak_memory_mb']:.0f} MB ({r['peak_memory_kind']})"),
        ("parameters", f"{r['params'] / 1e6:.2f} M ({r['disk_mb']:.1f} MB {r['dtype']})"),
        (
            "utterances",
            f"{r['n_utterances']} ({r['n_skipped']} skipped), {r['audio_seconds']:.1f} s of audio",
        ),
        ("compute", f"{r['compute_seconds']:.2f} s on {r['device']}, {r['threads']} threads"),
        ("decoding", _decoding_text(r)),
        ("audio context", _context_text(r)),
    ]
    lines = [f"# Evaluation of `{r['model']}` on `{r['data']}`", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", f"Timing: {r['timing']}.", f"Date: {r['date']}.", ""]
    return "\n".join(lines)
