"""``geodistill evaluate``: WER, CER, real-time factor and peak memory of a model on a data spec.

Writes, when ``out`` is given:
- ``eval.json``: every number plus what produced it (model, device, threads, batch, beam, versions, date);
- ``eval.md``: the headline numbers as a small table;
- ``utterances.jsonl``: one row per decoded utterance (reference, hypothesis, error counts, WER, and
  Whisper's no-speech probability: over 0.6 the clip is likely silence or noise, its hypothesis a
  hallucination; null for a family without one);
- ``bad_samples.jsonl``: the utterances this run skipped, with the reason (started afresh each run).

One evaluation at a time writes into ``out`` (it holds the folder's lock: ``geodistill.runlock``). The
files are written together at the end, each to a temporary sibling first and renamed into place, eval.json
last: an interrupted or failed run (a full disk: one line naming the file) leaves the previous run's files
as they were, and an eval.json always stands beside the utterances.jsonl and bad_samples.jsonl it counts.

Compute time covers ``model.generate`` only (encoder + KV-cached decoding, device-synchronised). Audio
decoding/resampling and log-Mel extraction are timed separately (``feature_seconds``) and are not in the
RTF, so the RTF compares models rather than audio pipelines.

Utterances are decoded longest first (by their listed duration) so each batch pads little, and reported in
input order. The audio context (full 30 s, or the clip + a margin: ``geodistill.models.context``) is the
model's stored one unless ``audio_context`` / ``context_margin`` override it; eval.json records it.

A ``hub:`` spec (``geodistill.data.hub``) is streamed, never listed: its first ``limit`` usable rows are
read (all of them without a limit), decoded as they arrive and scored in passes of about an hour of audio
(``STREAM_PASS_SECONDS``), so memory holds one pass, not the split. Each pass is ordered longest first.

Languages: each utterance is scored with its own language (its data's ``language`` column, else
``--language``). A test set with several languages gets ``per_language`` in eval.json (WER, CER and the
headline ``metric`` of each: CER for languages written without spaces, ``decoding.wer.headline``), and
without ``--language`` each language is decoded with its own prompt, one group after the other.

Tasks: each utterance is decoded with its data's ``task`` column where it has one, else ``--task``
(transcribe by default; translate: into English, with a multilingual model). A translated utterance is scored
as English against its reference, which should then be the English translation. eval.json's ``task`` is the
one every row was decoded with (null when rows differ); utterances.jsonl names each row's.

Decoding belongs to the model's student family (``geodistill.students``; ``family`` in eval.json): a
Whisper model's is ``geodistill.students.seq2seq.decode``, a CTC student's ``geodistill.students.ctc.decode``.
The same files, scores and cost numbers come out of each; ``timing`` says what each one's compute covers.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch

from geodistill.data import SAMPLE_RATE, BadSamples, Utterance, load_spec
from geodistill.data.hub import hub_utterances, is_hub_spec
from geodistill.decoding.batches import Decoded
from geodistill.decoding.options import DecodeOptions
from geodistill.decoding.speed import MemoryMeter, Timer, count_params, model_disk_mb, real_time_factor
from geodistill.decoding.wer import language_scores, wer_scores
from geodistill.decoding.whisper import CHUNK_SECONDS
from geodistill.errors import DataError
from geodistill.outdir import output_dir, replace_files
from geodistill.runlock import hold
from geodistill.students import DEFAULT, FAMILIES, family_of
from geodistill.versions import package_versions

# audio decoded and scored per pass over a streamed (hub:) spec: 1 h = 57.6 M float32 samples = 230 MB
STREAM_PASS_SECONDS = 3600.0


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


def utterance_passes(
    data, bad: BadSamples, limit: int | None = None, long_form: bool = False
) -> Iterator[list[Utterance]]:
    """The utterances of ``data`` in the passes they are decoded in: one list for a listed spec (or a list of
    Utterance), consecutive lists of about ``STREAM_PASS_SECONDS`` of audio for a streamed ``hub:`` spec.
    A bad spec raises here, before any is decoded."""
    if not (isinstance(data, str) and is_hub_spec(data)):
        return iter([load_utterances(data, bad, limit, long_form=long_form)])
    most = float("inf") if long_form else float(CHUNK_SECONDS)
    rows = hub_utterances(data, bad, limit, max_duration=most)

    def passes() -> Iterator[list[Utterance]]:
        chunk: list[Utterance] = []
        seconds = 0.0
        for utt in rows:
            chunk.append(utt)
            seconds += utt.samples.size / SAMPLE_RATE if utt.samples is not None else 0.0
            if seconds >= STREAM_PASS_SECONDS:
                yield chunk
                chunk, seconds = [], 0.0
        if chunk:
            yield chunk

    return passes()


def evaluate(
    model,
    data,
    out: str | Path | None = None,
    limit: int | None = None,
    device: str = "auto",
    strict: bool = False,
    **options,
) -> dict:
    """Score ``model`` (a spec or a loaded (model, processor)) on ``data`` (a spec or a list of Utterance).

    ``options``: ``DecodeOptions`` fields (batch_size, language, beam_size, max_new_tokens, audio_context,
    context_margin, engine, assistant, long_form, fallback, warmup); the model's family refuses the ones it
    cannot honour before anything loads. Returns the eval.json dict (see the module docstring); writes the
    files under ``out`` when given. Raises DataError when no utterance is usable (or at the first bad one
    with ``strict``).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for all), got {limit}")
    family = family_of(model)
    opts = family.check(DecodeOptions(**options))
    if out is None:
        return _evaluate(family, opts, model, data, None, limit, device, strict)
    with hold(output_dir(out, "evaluate"), "geodistill evaluate") as out_dir:
        return _evaluate(family, opts, model, data, out_dir, limit, device, strict)


def _evaluate(
    family,
    opts: DecodeOptions,
    model,
    data,
    out_dir: Path | None,
    limit: int | None,
    device: str,
    strict: bool,
) -> dict:
    # the skips are kept in memory and written with the other files at the end: this run's only, as
    # eval.json counts them (not a rerun's doubled list), and the previous run's until this one is complete
    bad = BadSamples(strict=strict)
    passes = utterance_passes(data, bad, limit, long_form=opts.long_form)  # a bad spec fails before the load
    loaded, processor, dev = family.load(model, device, opts)
    meter = MemoryMeter(torch.device(dev))
    meter.start()
    decoded, decoding, timing, n_read = Decoded(), {}, "", 0
    for k, utts in enumerate(passes):
        part, decoding, timing = decode_by_language(
            family, loaded, processor, utts, bad, replace(opts, warmup=opts.warmup and k == 0)
        )
        merge(decoded, part)
        n_read += len(utts)
    peak_mb = meter.peak_mb()
    if not decoded.utterances:
        raise DataError(f"{_describe(data, 'data')}: no usable utterances ({bad.count} skipped)")
    refs = [u.text or "" for u in decoded.utterances]
    # a translation is English whatever the clip's language, and is scored so
    tasks = [u.task or opts.task or "transcribe" for u in decoded.utterances]
    languages = [
        "en" if task == "translate" else u.language or opts.language
        for u, task in zip(decoded.utterances, tasks, strict=True)
    ]
    scores = wer_scores(refs, decoded.hypotheses, language=[lang or "en" for lang in languages])
    per_language = language_scores(refs, decoded.hypotheses, languages)
    metrics = {entry["metric"] for entry in per_language.values()}
    result = {
        "model": _describe(model, type(loaded).__name__ + " (in memory)"),
        "data": _describe(data, f"{n_read} utterances (in memory)"),
        "family": family.name,
        **{k: scores[k] for k in ("wer", "wer_raw", "cer", "n_ref_words")},
        # the headline error rate: CER when every language is written without spaces (zh, ja, th, ...)
        "metric": "cer" if metrics == {"cer"} else "wer",
        "per_language": per_language if len(per_language) > 1 else None,
        **_cost(loaded, torch.device(dev), decoded, peak_mb, timing),
        "n_utterances": len(decoded.utterances),
        "n_skipped": bad.count,
        "batch_size": opts.batch_size,
        "language": opts.language,
        # the task every row was decoded with (None: rows differ; utterances.jsonl names each row's)
        "task": tasks[0] if len(set(tasks)) == 1 else None,
        "limit": limit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": package_versions(),
        **decoding,
        **decoded.stats,
        "warmup": decoded.warmup,
    }
    if out_dir is not None:
        _write_outputs(out_dir, result, decoded, refs, scores["per_utterance"], bad.items, tasks)
    return result


def decode_by_language(family, model, processor, utts: list[Utterance], bad: BadSamples, opts: DecodeOptions):
    """``family.decode`` of ``utts``, group by group where rows differ: without ``opts.language``, utterances
    that name their language are decoded with their own (the rest detect it); a row's own task wins over
    ``opts.task``. The results are merged in input order."""
    groups: dict[tuple[str | None, str | None], list[int]] = {}
    for i, u in enumerate(utts):
        groups.setdefault((opts.language or u.language, u.task or opts.task), []).append(i)
    if set(groups) == {(opts.language, opts.task)}:
        return family.decode(model, processor, utts, bad, opts)
    where = {u.id: i for i, u in enumerate(utts)}
    merged, fields, timing = Decoded(compute=Timer(), feature=Timer()), {}, ""
    rows: list[tuple[int, Utterance, str, float, float | None]] = []
    for k, ((lang, task), idx) in enumerate(groups.items()):
        # checked again: a row's task may be one the family refuses (a CTC student cannot translate)
        group_opts = family.check(replace(opts, language=lang, task=task, warmup=opts.warmup and k == 0))
        part, fields, timing = family.decode(model, processor, [utts[i] for i in idx], bad, group_opts)
        rows += zip(
            [where[u.id] for u in part.utterances],
            part.utterances,
            part.hypotheses,
            part.audio_seconds,
            part.no_speech or [None] * len(part.utterances),
            strict=True,
        )
        merge(merged, part, rows=False)
    for _, utt, hyp, secs, p in sorted(rows, key=lambda row: row[0]):
        merged.utterances.append(utt)
        merged.hypotheses.append(hyp)
        merged.audio_seconds.append(secs)
        merged.no_speech.append(p)
    return merged, {**fields, "language": opts.language}, timing


def merge(into: Decoded, part: Decoded, rows: bool = True) -> None:
    """Add ``part``'s costs (timers, tokens, stats, warm-up) to ``into`` and, with ``rows``, append its
    utterances, transcripts, lengths and no-speech probabilities after ``into``'s."""
    for timer, add in ((into.compute, part.compute), (into.feature, part.feature)):
        timer.seconds += add.seconds
        timer.laps += add.laps
    into.n_tokens = None if part.n_tokens is None else (into.n_tokens or 0) + part.n_tokens
    for key, value in part.stats.items():
        into.stats[key] = into.stats.get(key, 0) + value
    into.warmup = into.warmup or part.warmup
    if rows:
        into.utterances += part.utterances
        into.hypotheses += part.hypotheses
        into.audio_seconds += part.audio_seconds
        into.no_speech += part.no_speech or [None] * len(part.utterances)


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _write_outputs(
    out_dir: Path,
    result: dict,
    decoded: Decoded,
    refs: list[str],
    per_utt: list[dict],
    skipped: list[dict],
    tasks: list[str],
) -> None:
    """utterances.jsonl, bad_samples.jsonl (removed when nothing was skipped), eval.md, then eval.json."""
    rows = []
    no_speech = decoded.no_speech or [None] * len(decoded.utterances)
    for utt, ref, hyp, secs, row, p, task in zip(
        decoded.utterances,
        refs,
        decoded.hypotheses,
        decoded.audio_seconds,
        per_utt,
        no_speech,
        tasks,
        strict=True,
    ):
        errors = {k: row[k] for k in ("substitutions", "deletions", "insertions", "hits")}
        rows.append(
            {
                "id": utt.id,
                "reference": ref,
                "hypothesis": hyp,
                "audio_seconds": secs,
                "errors": errors,
                "ref_words": row["ref_words"],
                "wer": row["wer"],
                "language": utt.language,
                "task": task,
                "no_speech_prob": p,
            }
        )
    files = {
        out_dir / "utterances.jsonl": _jsonl(rows),
        out_dir / "bad_samples.jsonl": _jsonl(skipped) if skipped else None,
        out_dir / "eval.md": eval_markdown(result).encode("utf-8"),
        out_dir / "eval.json": (json.dumps(result, indent=2) + "\n").encode("utf-8"),
    }
    replace_files(files, "the evaluation")


def eval_markdown(r: dict) -> str:
    """The headline numbers of an eval.json dict as a Markdown table (its family words the decoding rows)."""
    described = FAMILIES[r.get("family", DEFAULT.name)].describe(r)
    rows = [
        ("WER (normalised)", f"{100 * r['wer']:.2f} %"),
        ("WER (raw)", f"{100 * r['wer_raw']:.2f} %"),
        ("CER (normalised)", f"{100 * r['cer']:.2f} %"),
        ("real-time factor", f"{r['rtf']:.4f}"),
        ("tokens / s", described["tokens / s"]),
        ("peak memory", f"{r['peak_memory_mb']:.0f} MB ({r['peak_memory_kind']})"),
        ("parameters", f"{r['params'] / 1e6:.2f} M ({r['disk_mb']:.1f} MB {r['dtype']})"),
        (
            "utterances",
            f"{r['n_utterances']} ({r['n_skipped']} skipped), {r['audio_seconds']:.1f} s of audio",
        ),
        ("compute", f"{r['compute_seconds']:.2f} s on {r['device']}, {r['threads']} threads"),
        ("decoding", described["decoding"]),
        ("audio context", described["audio context"]),
    ]
    lines = [f"# Evaluation of `{r['model']}` on `{r['data']}`", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    if r.get("per_language"):
        lines += ["", "| language | utterances | WER | CER | headline |", "|---|---:|---:|---:|---|"]
        lines += [
            f"| {lang} | {e['n_utterances']} | {100 * e['wer']:.2f} % | {100 * e['cer']:.2f} % | "
            f"{e['metric'].upper()} {100 * e['error_rate']:.2f} % |"
            for lang, e in r["per_language"].items()
        ]
    lines += ["", f"Timing: {r['timing']}.", f"Date: {r['date']}.", ""]
    return "\n".join(lines)
