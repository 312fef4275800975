"""Building a cache: run the frozen teacher once over the data, shard by shard; an interrupted build
resumes."""

from __future__ import annotations

import datetime
import functools
import json
import logging
import math
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors import safe_open
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from geodistill.contracts import IGNORE_INDEX
from geodistill.data import BadSamples, SpeechDataset, WhisperCollator, load_spec
from geodistill.data.dataset import check_utterances, normalise
from geodistill.data.tokens import Prompts
from geodistill.errors import DataError, GeodistillError
from geodistill.models import load_whisper, resolve_device
from geodistill.models.frames import align_frames
from geodistill.parallel import all_done, owned_parts, part_written, teacher_world
from geodistill.progress import progress
from geodistill.runlock import HOLDER, LOCK, hold
from geodistill.teacher.cache.estimate import check_budget, estimate_size, folder_bytes
from geodistill.teacher.cache.fingerprint import (
    data_fingerprint,
    data_spec_name,
    spec_name,
    teacher_fingerprint,
)
from geodistill.teacher.cache.format import (
    CONTENT_KEYS,
    FORMAT,
    INDEX,
    STORAGE_DTYPES,
    CacheOptions,
    _field_shapes,
    _index_dtype,
    _write_json,
    check_fields,
    cross_kv_names,
    lse_name,
    read_index,
    shard_name,
    write_shard,
)
from geodistill.teacher.cache.verify import damaged_parts, processor_ok, save_processor, shard_problem
from geodistill.teacher.outputs import forward_states
from geodistill.versions import package_versions

log = logging.getLogger("geodistill")


@dataclass(frozen=True)
class BuildOptions:
    """How a cache is built: which utterances and labels (made as the training loop makes them), how they
    are batched and sharded, and where the teacher runs. All but batch_size and device are recorded in
    index.json and must match to reuse or resume the cache."""

    batch_size: int = 8  # utterances per teacher forward
    shard_size: int = 64  # utterances per shard file
    device: str = "auto"  # where a teacher given as a spec is loaded ("auto": CUDA when present)
    language: str | None = None  # decoder prompt language of rows without their own (Prompts)
    task: str = "transcribe"  # decoder prompt task of rows without their own
    timestamp_probability: float = 0.0  # share of rows with timestamped text trained on it (SpeechDataset)
    seed: int = 0  # the run's train.seed: which rows draw timestamps (recorded only when the share is > 0)
    normalise_text: bool = False  # normalise the label text as SpeechDataset does
    min_duration: float = 1.0  # seconds: shorter utterances are skipped (load_spec)
    max_duration: float = 30.0  # seconds: longer utterances are skipped (load_spec)
    max_size: int | None = None  # bytes: refuse a cache estimated larger (``estimate.check_budget``)

    def recorded(self) -> dict:
        """The settings index.json records (label settings and shard size), in its key order."""
        keys = ("language", "task", "timestamp_probability", "normalise_text", "min_duration", "max_duration")
        return {
            **{k: getattr(self, k) for k in keys},
            "timestamp_seed": self.seed if self.timestamp_probability > 0 else None,
            "shard_size": self.shard_size,
        }


def extra_language_ids(tokenizer) -> tuple[int, ...]:
    """Ids of the teacher's languages beyond Whisper's first 99 (large-v3's <|yue|>): the ones a smaller
    multilingual student's vocabulary lacks, whose logits a cache stores (``CacheOptions.extra_ids``)."""
    vocab = tokenizer.get_vocab()
    return tuple(vocab[f"<|{code}|>"] for code in list(LANGUAGES)[99:] if f"<|{code}|>" in vocab)


def _load_teacher(teacher, device: str):
    """(model, processor): a spec is loaded on ``device`` (fp16 on CUDA, fp32 elsewhere, like the loop)."""
    if not isinstance(teacher, str | Path):
        model, processor = teacher
        return model.eval().requires_grad_(False), processor

    dev = resolve_device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    model, processor = load_whisper(str(teacher), device=str(dev), dtype=dtype)
    return model.eval().requires_grad_(False), processor


def _header(teacher, model, processor, data, utts, prompt, opts: CacheOptions, build: BuildOptions) -> dict:
    spec = spec_name(teacher) if isinstance(teacher, str | Path) else str(model.config.name_or_path or "")
    return {
        "format": FORMAT,
        "status": "building",
        "teacher": spec,
        "teacher_fingerprint": teacher_fingerprint(model),
        "teacher_config": json.loads(model.config.to_json_string()),
        "data": data_spec_name(data),
        "data_fingerprint": data_fingerprint(utts),
        "ids": [u.id for u in utts],
        "prompt": list(prompt),  # rows without their own language / task, without timestamps
        **build.recorded(),
        "top_k": opts.top_k,
        "full_logits": opts.full_logits,
        "store_encoder": opts.store_encoder,
        "encoder_pool": opts.encoder_pool,
        "dtype": opts.dtype,
        "temperatures": list(opts.temperatures),
        "cross_kv_layers": list(opts.cross_kv_layers),
        "extra_ids": list(opts.extra_ids),
        "vocab_size": int(model.config.vocab_size),
        "pad_id": int(processor.tokenizer.pad_token_id),
        "versions": package_versions(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _check_options(opts: CacheOptions, build: BuildOptions, vocab: int, n_layers: int) -> None:
    if not 1 <= opts.top_k <= vocab:
        raise GeodistillError(f"top_k: must be in 1..{vocab} (the teacher's vocabulary), got {opts.top_k}")
    if opts.encoder_pool is not None and (opts.encoder_pool < 1 or 1500 % opts.encoder_pool):
        raise GeodistillError(f"encoder_pool: must divide 1500 encoder frames, got {opts.encoder_pool}")
    if any(not t > 0 for t in opts.temperatures):
        raise GeodistillError(f"temperatures: must all be > 0, got {list(opts.temperatures)}")
    if any(not 0 <= j < n_layers for j in opts.cross_kv_layers):
        raise GeodistillError(
            f"cross_kv_layers: teacher decoder layers are 0..{n_layers - 1}, got {list(opts.cross_kv_layers)}"
        )
    if build.batch_size < 1 or build.shard_size < 1:
        raise GeodistillError(
            f"batch_size and shard_size must be >= 1, got {build.batch_size} and {build.shard_size}"
        )


def _estimate(utts, processor, config, prompt, header: dict, opts: CacheOptions, build: BuildOptions):
    """``estimate_size`` of this build: each utterance's label tokens counted as the dataset makes them
    (one batched tokenizer call), index.json as it will be written, the processor as saved (to a
    temporary folder)."""
    texts = [normalise(u.text) if build.normalise_text else u.text for u in utts]
    ids = processor.tokenizer([" " + t.strip() for t in texts], add_special_tokens=False).input_ids
    counts = [len(prompt) + len(i) for i in ids]  # prompt + text; the eot is a label, never an input
    with tempfile.TemporaryDirectory() as tmp:
        save_processor(processor, Path(tmp))
        fixed = folder_bytes(Path(tmp)) + len(json.dumps({**header, "skipped": [], "n_shards": 0}, indent=1))
    return estimate_size(opts, config, counts, header["ids"], build.shard_size, fixed)


def _lengths(labels: torch.Tensor) -> list[int]:
    """Real length of each row of a collated batch: one past its last label (the eot), (B, L) -> [B]."""
    pos = torch.arange(labels.shape[1]).expand_as(labels)
    return (torch.where(labels != IGNORE_INDEX, pos, -1).amax(dim=1) + 1).tolist()


@torch.no_grad()
def teacher_rows(model, batch: dict, opts: CacheOptions) -> list[dict[str, torch.Tensor]]:
    """One teacher-forced forward over a collated batch, cut into per-utterance rows on the CPU.

    Each row: decoder_input_ids (n,), topk_logprobs / topk_indices (n, k), logsumexp (n,) fp32,
    decoder_hidden (n, D), and when asked logprobs (n, V), encoder_hidden (T, D), cross_k.j / cross_v.j
    (heads, T, D / heads); n = that row's length.
    """
    param = next(model.parameters())
    dec = batch["decoder_input_ids"]
    feats = batch["input_features"].to(param)
    out = forward_states(
        model, dec.to(param.device), input_features=feats, keep_cross_kv=opts.cross_kv_layers
    )
    logits = out.logits.float()
    lse = logits.logsumexp(dim=-1)
    logp = logits - lse.unsqueeze(-1)
    top_v, top_i = logp.topk(opts.top_k, dim=-1)
    top_i = top_i.to("cpu", torch.int32).to(_index_dtype(logits.shape[-1]))
    enc = out.encoder_hidden
    if opts.encoder_pool:
        enc = align_frames(enc.float(), enc.shape[1] // opts.encoder_pool, "pool")

    def take(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x.to("cpu", dtype, copy=True)  # a copy, not a view that would pin the whole batch

    rows = []
    for i, n in enumerate(_lengths(batch["labels"])):
        row = {
            "decoder_input_ids": take(dec[i, :n], torch.int32),
            "topk_logprobs": take(top_v[i, :n], opts.storage_dtype),
            "topk_indices": top_i[i, :n].clone(),
            "logsumexp": take(lse[i, :n], torch.float32),
            "decoder_hidden": take(out.decoder_hidden[i, :n], opts.storage_dtype),
        }
        for t in opts.temperatures:
            row[lse_name(t)] = take((logits[i, :n] / t).logsumexp(dim=-1), torch.float32)
        if opts.extra_ids:
            row["extra_logits"] = take(logits[i, :n][:, list(opts.extra_ids)], torch.float32)
        if opts.full_logits:
            row["logprobs"] = take(logp[i, :n], opts.storage_dtype)
        if opts.store_encoder:
            row["encoder_hidden"] = take(enc[i], opts.storage_dtype)
        for j, (keys, values) in out.cross_kv.items():
            k_name, v_name = cross_kv_names(j)
            row[k_name], row[v_name] = take(keys[i], opts.storage_dtype), take(values[i], opts.storage_dtype)
        rows.append(row)
    return rows


def _shard_batches(dataset, ids: list[str], indices: range, batch_size: int):
    """(usable samples, ids of unusable ones) per batch of ``indices``; the data layer logs the reasons."""
    for start in range(indices.start, indices.stop, batch_size):
        picked = range(start, min(start + batch_size, indices.stop))
        samples = [dataset[i] for i in picked]
        skipped = [ids[i] for i, s in zip(picked, samples, strict=True) if s is None]
        yield [s for s in samples if s is not None], skipped


def _fill_shards(
    out: Path, model, dataset, collate, ids: list[str], build: BuildOptions, opts: CacheOptions, world
) -> list[str]:
    """Compute and write every shard of this rank not already on disk; returns the ids of all unusable
    utterances of its shards (geodistill.parallel: shard s belongs to rank s % world size)."""
    fields = _field_shapes(opts, model.config)
    shard_size = build.shard_size
    n_shards = math.ceil(len(ids) / shard_size)
    all_skipped: list[str] = []
    mine = owned_parts(n_shards, world)
    problems = {
        s: shard_problem(out / shard_name(s), ids[s * shard_size : (s + 1) * shard_size], fields)
        for s in mine
    }
    for s, problem in problems.items():
        if problem not in (None, "missing"):
            log.warning("teacher cache: %s %s; recomputing it", out / shard_name(s), problem)
    done = [s for s, p in problems.items() if p is None]
    if done:
        log.info("teacher cache %s: resuming: %d of %d shards done", out, len(done), len(problems))
    for s in progress(mine, desc="teacher cache", unit="shard"):
        indices = range(s * shard_size, min((s + 1) * shard_size, len(ids)))
        path = out / shard_name(s)
        if problems[s] is None:
            all_skipped += shards_skipped(out, s + 1, first=s)
            continue
        rows, kept, skipped = [], [], []
        for samples, bad in _shard_batches(dataset, ids, indices, build.batch_size):
            skipped += bad
            if samples:
                batch = collate(samples)
                rows += teacher_rows(model, batch, opts)
                kept += list(batch["ids"])
        write_shard(path, kept, rows, skipped, fields)
        part_written(s // world.size + 1, world)
        all_skipped += skipped
        log.info("teacher cache: shard %d/%d written (%d utterances)", s + 1, n_shards, len(kept))
    return all_skipped


def shards_skipped(out: Path, stop: int, first: int = 0) -> list[str]:
    """The ids of the unusable utterances recorded in shards first..stop-1, in shard order."""
    skipped: list[str] = []
    for s in range(first, stop):
        with safe_open(str(out / shard_name(s)), framework="pt") as f:
            skipped += json.loads(f.metadata()["skipped"])
    return skipped


def _refuse_foreign(out: Path) -> None:
    """A folder that has files but no index.json is not a cache: never write shards into it."""
    if out.is_dir() and not (out / INDEX).is_file():
        strangers = [p.name for p in out.iterdir() if p.name not in ("bad_samples.jsonl", LOCK, HOLDER)]
        if strangers:
            raise GeodistillError(
                f"{out}: folder is not empty and not a teacher cache (no {INDEX}); "
                "choose an empty or new folder"
            )


def _one_writer(fn):
    """Hold the cache folder (``runlock.hold``) while ``fn(teacher, data, out, ...)`` builds into it; under
    torchrun only rank 0 holds it (the ranks of one build share the folder by design)."""

    @functools.wraps(fn)
    def held(teacher, data, out, *args, **kwargs):
        if int(os.environ.get("RANK", "0")) != 0:
            return fn(teacher, data, Path(out), *args, **kwargs)
        with hold(out, "geodistill cache") as folder:
            return fn(teacher, data, folder, *args, **kwargs)

    return held


@_one_writer
def build_cache(
    teacher, data, out, options: CacheOptions | None = None, build: BuildOptions | None = None
) -> Path:
    """Run ``teacher`` once over ``data`` and store its outputs in the folder ``out``; returns ``out``.

    teacher: a model spec or a loaded (model, processor) pair. data: a data spec (see load_spec). The
    labels are built exactly as the training loop builds them (SpeechDataset + WhisperCollator with
    prompt_ids(language)). A folder holding a complete cache with the same settings is returned as is, a
    partial one (interrupted build) is resumed keeping its finished shards, one with other settings is
    refused. options: what is stored (default ``CacheOptions()``); build: which labels and how it is
    batched (default ``BuildOptions()``). options.dtype: "float16" (default) or "float32" storage of
    log-probs and hidden states. options.temperatures: besides T = 1, the KL temperatures at which
    logsumexp(z / T) is stored too (4 bytes a token each): the top-k KL at T is exact only with the
    normaliser taken at T (losses.kd). options.cross_kv_layers: teacher decoder layers whose
    cross-attention keys/values to store, 2 x 1500 x D values per layer and utterance: a copy student that
    keeps those layers with their cross-attention k/v projections frozen then skips them
    (``teacher_cache_cross_kv`` in a run's config). options.store_encoder: the last encoder states
    (off by default: ``teacher.factory.encoder_states_read`` says when a run reads them).

    Before the first shard (and before index.json) the size is estimated and logged
    (``estimate.estimate_size``); a build the disk under ``out`` has no room for, or one over
    ``build.max_size`` bytes, is refused in one line (``estimate.check_budget``).
    """

    out = Path(out)
    _refuse_foreign(out)
    opts, build = (options or CacheOptions()).normalised(), build or BuildOptions()
    world = teacher_world(build.device)
    all_done(world)  # every rank has looked at the folder before rank 0 writes into it
    if opts.dtype not in STORAGE_DTYPES:
        raise GeodistillError(f"dtype: must be one of {tuple(STORAGE_DTYPES)}, got {opts.dtype!r}")
    model, processor = _load_teacher(teacher, build.device)
    opts = replace(opts, extra_ids=extra_language_ids(processor.tokenizer))
    _check_options(opts, build, model.config.vocab_size, model.config.decoder_layers)
    bad = BadSamples(out / "bad_samples.jsonl")
    utts = load_spec(
        data,
        bad=bad if world.is_main else None,
        min_duration=build.min_duration,
        max_duration=build.max_duration,
    )
    if not utts:
        raise DataError(f"{data}: no usable utterances to cache ({bad.count} skipped, see {bad.path})")
    name = spec_name(teacher) if isinstance(teacher, str | Path) else "the teacher"
    prompts = Prompts(processor, model, language=build.language, task=build.task, name=name)
    check_utterances(prompts, utts)
    prompt = prompts.ids() if prompts.problem(None, None) is None else []
    header = _header(teacher, model, processor, data, utts, prompt, opts, build)
    old = read_index(out)
    damaged: list[str] = []
    if old is not None:
        check_fields(old, {k: header[k] for k in CONTENT_KEYS}, out)
        if old["status"] == "complete":
            damaged = damaged_parts(out, old, _field_shapes(opts, model.config))
            if not damaged:
                return out
    estimate = _estimate(utts, processor, model.config, prompt, header, opts, build)
    log.info(estimate.line())
    check_budget(out, estimate, build.max_size)
    if old is not None:
        if damaged:
            log.warning("teacher cache %s: damaged, rebuilding: %s", out, "; ".join(damaged))
            if world.is_main:
                _write_json(out / INDEX, {**old, "status": "building"})
        header = old
    elif world.is_main:  # "building": claims the folder for these settings, so a resume checks them
        _write_json(out / INDEX, header)
    if world.is_main and not processor_ok(out):  # also after a kill left it empty; "complete" comes last
        save_processor(processor, out)
    all_done(world)
    dataset = SpeechDataset(
        utts,
        processor,
        bad=bad,
        normalise_text=build.normalise_text,
        prompts=prompts,
        timestamp_probability=build.timestamp_probability,
        seed=build.seed,
    )
    collate = WhisperCollator(prompt or None, processor.tokenizer.pad_token_id)
    skipped = _fill_shards(out, model, dataset, collate, header["ids"], build, opts, world)
    if world.active:  # rank 0 writes the index once every rank's shards are on disk
        all_done(world)
        skipped = shards_skipped(out, math.ceil(len(utts) / build.shard_size))
    if world.is_main:
        done = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        _write_json(
            out / INDEX,
            {
                **header,
                "status": "complete",
                "n_shards": math.ceil(len(utts) / build.shard_size),
                "skipped": skipped,
                "completed": done,
            },
        )
    all_done(world)
    return out
