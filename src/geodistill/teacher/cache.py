"""Teacher-output cache: run the frozen teacher once over a data set, then train and tune many times.

What is cacheable, and why. The teacher is frozen, in eval mode (no dropout) and teacher-forced on the
ground-truth label tokens, so everything it gives the loop is a pure function of (teacher weights,
audio, label ids) and constant per utterance for the whole run and for every tuning trial:

- decoder logits, stored as the top-k log-probabilities + their ids + the full-vocabulary logsumexp at
  T = 1 and at each KL temperature asked for (the top-k KL of ``geodistill.losses.kd`` at T is the exact
  k + 1 bucket KL only with the logsumexp taken at T; from T = 1 alone the loss must extrapolate the
  tail), optionally the full-vocabulary log-probabilities (the KL is then the full one);
- the last decoder layer's states (the decoder hidden loss);
- the last encoder layer's states (B, 1500, D_t): the encoder hidden loss, and, when the student's
  encoder is an untouched frozen full copy of the teacher's (``Run.shares_encoder``), the student's own
  encoder output as well, so a cached run does no encoder forward at all, teacher's or student's;
- optionally (``cross_kv_layers``) the cross-attention keys and values of chosen decoder layers: the
  ``encoder_attn.k_proj`` / ``v_proj`` projections of the encoder states, 2 x D^2 x 1500 x 2 FLOPs per
  layer and utterance. A copy student that keeps those layers with the two projections frozen (LoRA only
  on text-side linears, preset ``decoder-text-side``) and shares the encoder has the very same keys and
  values, so it reads them instead of projecting 1500 frames per layer every step
  (``train.setup.cross_kv_plan`` decides, ``shared_cross_kv`` checks the weights). With LoRA on a
  cross-attention k or v they train, and are not constants.

Not cacheable at all: anything downstream of a trainable weight, and any audio augmentation (a cache of
augmented audio would freeze one draw of the noise).

Layout (one folder)::

    index.json                settings, teacher + data fingerprints, utterance ids, status
    processor/                the teacher's processor (tokenizer check without loading the teacher)
    shard-00000.safetensors   shard_size utterances, tensors concatenated over their tokens:
        decoder_input_ids (N_tok,) int32   the teacher-forced input, prompt + text (verified on read)
        topk_logprobs (N_tok, k)           log p of the k most likely tokens, storage dtype
        topk_indices (N_tok, k)            their ids, uint16 (Whisper's vocabulary < 65536) else int32
        logsumexp (N_tok,) float32         logsumexp of the full raw logits at T = 1
        logsumexp_t2 (N_tok,) float32      logsumexp(z / 2), one per extra temperature (default T = 2)
        logprobs (N_tok, V)                full log-softmax (full_logits=True only)
        decoder_hidden (N_tok, D_t)        last decoder states, after the final layer norm
        encoder_hidden (N_utt, T, D_t)     last encoder states (T = 1500, or 1500 / encoder_pool)
        cross_k.j, cross_v.j (N_utt, H, 1500, D_t / H)   teacher layer j's cross-attention keys / values
    bad_samples.jsonl         utterances the data layer could not use (not in any shard)

Why safetensors shards rather than .npy memmaps: one self-describing file per shard (dtypes, shapes and
the shard's utterance ids in its header), no pickle, written to a temporary name and renamed, so a shard
that exists is complete; ``safe_open`` memory-maps it and a slice reads only its own pages. Log-probs are
stored instead of raw logits because fp16 is precise near 0, where the probable tokens are (log p = -0.01
keeps 1e-5), whereas a raw logit of 20 keeps only 0.016; the logsumexp is kept in fp32 and added back.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from geodistill.contracts import IGNORE_INDEX, TeacherOffer
from geodistill.errors import DataError, GeodistillError
from geodistill.losses.hidden import align_frames
from geodistill.teacher.outputs import TeacherOutputs, forward_states
from geodistill.versions import package_versions

if TYPE_CHECKING:
    from geodistill.config import Config

log = logging.getLogger("geodistill")

FORMAT = 1  # bump when the layout changes: an older cache is then refused, not misread
INDEX = "index.json"
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
# Settings that decide a cache's content: resuming or reusing a cache with any of them changed is refused.
CONTENT_KEYS = (
    "format",
    "teacher_fingerprint",
    "data_fingerprint",
    "ids",
    "prompt",
    "language",
    "normalise_text",
    "min_duration",
    "max_duration",
    "top_k",
    "full_logits",
    "store_encoder",
    "encoder_pool",
    "dtype",
    "shard_size",
    "temperatures",
    "cross_kv_layers",
)


@dataclass(frozen=True)
class CacheOptions:
    top_k: int  # log-probs kept per position
    full_logits: bool  # keep the full-vocabulary log-probs too
    store_encoder: bool  # keep the last encoder states (needed for a shared frozen encoder / encoder loss)
    encoder_pool: int | None  # average encoder frames in windows of this many (3: 1500 -> 500), None = all
    dtype: torch.dtype  # storage dtype of log-probs and hidden states
    temperatures: tuple[float, ...] = ()  # extra T at which logsumexp(z / T) is stored (exact top-k KL at T)
    cross_kv_layers: tuple[int, ...] = ()  # teacher decoder layers whose cross-attention K/V are stored


def lse_name(temperature: float) -> str:
    """Tensor name of the full-vocabulary logsumexp(z / T) stored for temperature T (T = 1: "logsumexp")."""
    return "logsumexp" if float(temperature) == 1.0 else f"logsumexp_t{float(temperature):g}"


def cross_kv_names(layer: int) -> tuple[str, str]:
    """Tensor names of teacher decoder layer ``layer``'s stored cross-attention keys and values."""
    return f"cross_k.{layer}", f"cross_v.{layer}"


def shard_name(s: int) -> str:
    return f"shard-{s:05d}.safetensors"


def spec_name(spec: str | Path) -> str:
    """A model spec as recorded: existing paths absolute (the same teacher named from anywhere)."""
    spec = str(spec)
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() and not _is_embedded(spec) else spec


def data_spec_name(spec: str | Path) -> str:
    """A data spec as recorded: ``kind:absolute path`` ("train.jsonl" and "manifest:./train.jsonl" agree)."""
    from geodistill.data import parse_spec

    kind, path = parse_spec(spec)
    return f"{kind}:{path.resolve()}"


def _is_embedded(spec: str) -> bool:
    from geodistill.models.loading import EMBEDDED

    return spec in EMBEDDED


def teacher_fingerprint(model: torch.nn.Module) -> str:
    """Hash of the shapes and an evenly strided sample of every weight, rounded to fp16.

    The rounding makes the same teacher loaded in fp32 (CPU) or fp16 (GPU) hash the same; 512 samples a
    tensor keeps it fast for large-v2 while any fine-tune (which moves every weight) changes it.
    """
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        flat = p.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 512)][:512]
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update(sample.to("cpu", torch.float16).numpy().tobytes())
    return h.hexdigest()[:16]


def data_fingerprint(utts: list) -> str:
    """Hash of each utterance's id, audio reference, segment and text (a changed manifest changes it)."""
    h = hashlib.sha256()
    for u in utts:
        audio = (
            str(u.audio)
            if isinstance(u.audio, str | Path)
            else hashlib.sha256(np.ascontiguousarray(u.audio).tobytes()).hexdigest()
        )
        h.update(json.dumps([u.id, audio, u.offset, u.duration, u.text]).encode())
    return h.hexdigest()[:16]


def _show(value) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"[{len(value)} items: {', '.join(map(str, value[:3]))}, ...]"
    return repr(value)


def check_fields(found: dict, expect: dict, where: Path, what: str = "teacher cache") -> None:
    """Raise a one-line GeodistillError naming the first field whose value differs between the two."""
    for key, want in expect.items():
        have = found.get(key)
        if have != want:
            raise GeodistillError(
                f"{where}: {what} does not match this run: {key} is {_show(have)} in the cache but "
                f"{_show(want)} here (rebuild the cache into another folder, or restore the setting)"
            )


def read_index(cache_dir: str | Path) -> dict | None:
    """The cache's index.json, or None when there is none."""
    path = Path(cache_dir) / INDEX
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GeodistillError(f"{path}: unreadable teacher cache index ({exc})") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise GeodistillError(f"{path}: not a geodistill teacher cache of format {FORMAT}")
    index.setdefault("cross_kv_layers", [])  # caches written before cross-attention K/V could be stored
    return index


def is_complete(cache_dir: str | Path) -> bool:
    index = read_index(cache_dir)
    return index is not None and index.get("status") == "complete"


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _load_teacher(teacher, device: str):
    """(model, processor): a spec is loaded on ``device`` (fp16 on CUDA, fp32 elsewhere, like the loop)."""
    if not isinstance(teacher, str | Path):
        model, processor = teacher
        return model.eval().requires_grad_(False), processor
    from geodistill.models import load_whisper, resolve_device

    dev = resolve_device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    model, processor = load_whisper(str(teacher), device=str(dev), dtype=dtype)
    return model.eval().requires_grad_(False), processor


def _header(teacher, model, processor, data, utts, prompt, opts: CacheOptions, settings: dict) -> dict:
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
        "prompt": list(prompt),
        "task": "transcribe",
        **settings,
        "top_k": opts.top_k,
        "full_logits": opts.full_logits,
        "store_encoder": opts.store_encoder,
        "encoder_pool": opts.encoder_pool,
        "dtype": str(opts.dtype).removeprefix("torch."),
        "temperatures": list(opts.temperatures),
        "cross_kv_layers": list(opts.cross_kv_layers),
        "vocab_size": int(model.config.vocab_size),
        "pad_id": int(processor.tokenizer.pad_token_id),
        "versions": package_versions(),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _check_options(opts: CacheOptions, vocab: int, n_layers: int, batch_size: int, shard_size: int) -> None:
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
    if batch_size < 1 or shard_size < 1:
        raise GeodistillError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")


def _lengths(labels: torch.Tensor) -> list[int]:
    """Real length of each row of a collated batch: one past its last label (the eot), (B, L) -> [B]."""
    pos = torch.arange(labels.shape[1]).expand_as(labels)
    return (torch.where(labels != IGNORE_INDEX, pos, -1).amax(dim=1) + 1).tolist()


def _index_dtype(vocab: int) -> torch.dtype:
    return torch.uint16 if vocab <= 65536 else torch.int32


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
            "topk_logprobs": take(top_v[i, :n], opts.dtype),
            "topk_indices": top_i[i, :n].clone(),
            "logsumexp": take(lse[i, :n], torch.float32),
            "decoder_hidden": take(out.decoder_hidden[i, :n], opts.dtype),
        }
        for t in opts.temperatures:
            row[lse_name(t)] = take((logits[i, :n] / t).logsumexp(dim=-1), torch.float32)
        if opts.full_logits:
            row["logprobs"] = take(logp[i, :n], opts.dtype)
        if opts.store_encoder:
            row["encoder_hidden"] = take(enc[i], opts.dtype)
        for j, (keys, values) in out.cross_kv.items():
            k_name, v_name = cross_kv_names(j)
            row[k_name], row[v_name] = take(keys[i], opts.dtype), take(values[i], opts.dtype)
        rows.append(row)
    return rows


def _field_shapes(opts: CacheOptions, config) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Per-row tail shape and dtype of every stored tensor (so an all-bad shard still has its tensors)."""
    d, v = config.d_model, config.vocab_size
    fields = {
        "decoder_input_ids": ((), torch.int32),
        "topk_logprobs": ((opts.top_k,), opts.dtype),
        "topk_indices": ((opts.top_k,), _index_dtype(v)),
        "logsumexp": ((), torch.float32),
        "decoder_hidden": ((d,), opts.dtype),
    }
    for t in opts.temperatures:
        fields[lse_name(t)] = ((), torch.float32)
    if opts.full_logits:
        fields["logprobs"] = ((v,), opts.dtype)
    if opts.store_encoder:
        fields["encoder_hidden"] = ((config.max_source_positions // (opts.encoder_pool or 1), d), opts.dtype)
    heads = config.decoder_attention_heads
    for j in opts.cross_kv_layers:
        for name in cross_kv_names(j):
            fields[name] = ((heads, config.max_source_positions, d // heads), opts.dtype)
    return fields


PER_UTTERANCE = ("encoder_hidden", "cross_k.", "cross_v.")  # stacked by utterance, not by token


def write_shard(path: Path, ids: list[str], rows: list[dict], skipped: list[str], fields: dict) -> None:
    """Concatenate the rows' tokens (encoder states: stack the utterances) and write the shard atomically."""
    tensors = {}
    for name, (tail, dtype) in fields.items():
        parts = [r[name] for r in rows]
        if not parts:
            tensors[name] = torch.zeros((0, *tail), dtype=dtype)
        else:
            tensors[name] = torch.stack(parts) if name.startswith(PER_UTTERANCE) else torch.cat(parts)
    meta = {
        "ids": json.dumps(ids),
        "lengths": json.dumps([len(r["decoder_input_ids"]) for r in rows]),
        "skipped": json.dumps(skipped),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    with open(tmp, "rb") as f:  # on disk before the rename makes the shard count as done
        os.fsync(f.fileno())
    os.replace(tmp, path)


def shard_done(path: Path, ids: list[str]) -> bool:
    """True when ``path`` is a readable shard holding exactly ``ids`` (as cached or as skipped)."""
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        found = json.loads(meta["ids"]) + json.loads(meta["skipped"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        log.warning("teacher cache: %s is unreadable (%s); recomputing it", path, exc)
        return False
    return sorted(found) == sorted(ids)


def _shard_batches(dataset, ids: list[str], indices: range, batch_size: int):
    """(usable samples, ids of unusable ones) per batch of ``indices``; the data layer logs the reasons."""
    for start in range(indices.start, indices.stop, batch_size):
        picked = range(start, min(start + batch_size, indices.stop))
        samples = [dataset[i] for i in picked]
        skipped = [ids[i] for i, s in zip(picked, samples, strict=True) if s is None]
        yield [s for s in samples if s is not None], skipped


def _fill_shards(
    out: Path, model, dataset, collate, ids: list[str], shard_size: int, batch_size: int, opts: CacheOptions
) -> list[str]:
    """Compute and write every shard not already on disk; returns the ids of all unusable utterances."""
    fields = _field_shapes(opts, model.config)
    n_shards = math.ceil(len(ids) / shard_size)
    all_skipped: list[str] = []
    for s in range(n_shards):
        indices = range(s * shard_size, min((s + 1) * shard_size, len(ids)))
        path = out / shard_name(s)
        if shard_done(path, ids[indices.start : indices.stop]):
            with safe_open(str(path), framework="pt") as f:
                all_skipped += json.loads(f.metadata()["skipped"])
            continue
        rows, kept, skipped = [], [], []
        for samples, bad in _shard_batches(dataset, ids, indices, batch_size):
            skipped += bad
            if samples:
                batch = collate(samples)
                rows += teacher_rows(model, batch, opts)
                kept += list(batch["ids"])
        write_shard(path, kept, rows, skipped, fields)
        all_skipped += skipped
        log.info("teacher cache: shard %d/%d written (%d utterances)", s + 1, n_shards, len(kept))
    return all_skipped


def _refuse_foreign(out: Path) -> None:
    """A folder that has files but no index.json is not a cache: never write shards into it."""
    if out.is_dir() and not (out / INDEX).is_file():
        strangers = [p.name for p in out.iterdir() if p.name != "bad_samples.jsonl"]
        if strangers:
            raise GeodistillError(
                f"{out}: folder is not empty and not a teacher cache (no {INDEX}); "
                "choose an empty or new folder"
            )


def build_cache(
    teacher,
    data,
    out,
    top_k: int = 64,
    full_logits: bool = False,
    batch_size: int = 8,
    device: str = "auto",
    language: str | None = None,
    encoder_pool: int | None = None,
    normalise_text: bool = False,
    min_duration: float = 1.0,
    max_duration: float = 30.0,
    store_encoder: bool = True,
    dtype: str = "float16",
    shard_size: int = 64,
    temperatures: tuple[float, ...] = (2.0,),
    cross_kv_layers: tuple[int, ...] = (),
) -> Path:
    """Run ``teacher`` once over ``data`` and store its outputs in the folder ``out``; returns ``out``.

    teacher: a model spec or a loaded (model, processor) pair. data: a data spec (see load_spec). The
    labels are built exactly as the training loop builds them (SpeechDataset + WhisperCollator with
    prompt_ids(language)). A folder holding a complete cache with the same settings is returned as is, a
    partial one (interrupted build) is resumed keeping its finished shards, one with other settings is
    refused. dtype: "float16" (default) or "float32" storage of log-probs and hidden states.
    temperatures: besides T = 1, the KL temperatures at which logsumexp(z / T) is stored too (4 bytes a
    token each): the top-k KL at T is exact only with the normaliser taken at T (losses.kd).
    cross_kv_layers: teacher decoder layers whose cross-attention keys/values to store, 2 x 1500 x D
    values per layer and utterance: a copy student that keeps those layers with their cross-attention
    k/v projections frozen then skips them (``teacher_cache_cross_kv`` in a run's config).
    """
    from geodistill.data import BadSamples, SpeechDataset, WhisperCollator, load_spec, prompt_ids

    out = Path(out)
    _refuse_foreign(out)
    if dtype not in STORAGE_DTYPES:
        raise GeodistillError(f"dtype: must be one of {tuple(STORAGE_DTYPES)}, got {dtype!r}")
    model, processor = _load_teacher(teacher, device)
    extra = tuple(sorted({float(t) for t in temperatures} - {1.0}))
    kv_layers = tuple(sorted({int(j) for j in cross_kv_layers}))
    opts = CacheOptions(
        top_k, full_logits, store_encoder, encoder_pool, STORAGE_DTYPES[dtype], extra, kv_layers
    )
    _check_options(opts, model.config.vocab_size, model.config.decoder_layers, batch_size, shard_size)
    bad = BadSamples(out / "bad_samples.jsonl")
    utts = load_spec(data, bad=bad, min_duration=min_duration, max_duration=max_duration)
    if not utts:
        raise DataError(f"{data}: no usable utterances to cache ({bad.count} skipped, see {bad.path})")
    prompt = prompt_ids(processor, model, language=language)
    settings = {
        "language": language,
        "normalise_text": normalise_text,
        "min_duration": min_duration,
        "max_duration": max_duration,
        "shard_size": shard_size,
    }
    header = _header(teacher, model, processor, data, utts, prompt, opts, settings)
    old = read_index(out)
    if old is not None:
        check_fields(old, {k: header[k] for k in CONTENT_KEYS}, out)
        if old["status"] == "complete":
            return out
        log.info("teacher cache %s: resuming an interrupted build", out)
        header = old
    else:
        _write_json(out / INDEX, header)
        processor.save_pretrained(str(out / "processor"))
    dataset = SpeechDataset(utts, processor, bad=bad, normalise_text=normalise_text)
    collate = WhisperCollator(prompt, processor.tokenizer.pad_token_id)
    skipped = _fill_shards(out, model, dataset, collate, header["ids"], shard_size, batch_size, opts)
    done = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    _write_json(
        out / INDEX,
        {
            **header,
            "status": "complete",
            "n_shards": math.ceil(len(utts) / shard_size),
            "skipped": skipped,
            "completed": done,
        },
    )
    return out


def check_expectations(index: dict, expect: dict, where: Path) -> None:
    """Refuse a cache made for another run. ``expect`` keys are index fields (teacher, teacher_fingerprint,
    data, prompt, language, normalise_text, min_duration, max_duration, top_k, ...); given a fingerprint,
    the teacher spec itself may differ (the same weights reached by another path)."""
    expect = dict(expect)
    if "teacher_fingerprint" in expect:
        expect.pop("teacher", None)
    if "teacher" in expect:
        expect["teacher"] = spec_name(expect["teacher"])
    if "data" in expect:
        expect["data"] = data_spec_name(expect["data"])
    if "prompt" in expect:
        expect["prompt"] = list(expect["prompt"])
    check_fields(index, expect, where)


@dataclass(frozen=True)
class _Place:
    shard: int  # which shard file
    row: int  # the utterance's row in the shard (encoder states)
    start: int  # its first token in the shard's token-concatenated tensors
    length: int  # its token count (prompt + text)


class CachedTeacher:
    """Teacher outputs read from a complete cache: ``teacher(batch) -> TeacherOutputs`` like OnlineTeacher.

    Looks up ``batch["ids"]``, checks each cached decoder input equals the batch's, and pads to the batch's
    L (padding positions carry a uniform distribution and zero states; every loss masks them). Returns
    fp32 CPU tensors, except encoder_hidden (B, T, D_t) in the storage dtype: the loop casts it on device.
    ``temperature``: the run's KL temperature; when the cache stored logsumexp at it, that one is returned
    (with ``logsumexp_temperature``) so the top-k KL is exact, else the T = 1 one (the loss estimates).
    """

    def __init__(self, cache_dir: str | Path, expect: dict | None = None, temperature: float | None = None):
        self.cache_dir = Path(cache_dir)
        index = read_index(self.cache_dir)
        if index is None:
            raise GeodistillError(
                f"{self.cache_dir}: no teacher cache here (no {INDEX}); build one with "
                "`geodistill cache` or set teacher_cache to a new folder in a training run"
            )
        if index.get("status") != "complete":
            raise GeodistillError(
                f"{self.cache_dir}: teacher cache is incomplete (its build was interrupted); "
                "run the same `geodistill cache` command again to finish it"
            )
        check_expectations(index, expect or {}, self.cache_dir)
        self.index = index
        self.temperature = 1.0  # of the logsumexp handed out
        if temperature is not None and float(temperature) in index["temperatures"]:
            self.temperature = float(temperature)
        elif temperature is not None and float(temperature) != 1.0 and not index["full_logits"]:
            log.warning(
                "teacher cache %s has no logsumexp at T=%g (stored: 1, %s): the top-k KL will use an "
                "estimate of the tail; rebuild with temperatures=(%g,) for the exact one",
                self.cache_dir,
                temperature,
                index["temperatures"],
                temperature,
            )
        self._files, self._slices, self._where = [], [], {}
        for s in range(index["n_shards"]):
            self._open_shard(s)

    def _open_shard(self, s: int) -> None:
        path = self.cache_dir / shard_name(s)
        try:
            f = safe_open(str(path), framework="pt")  # memory-mapped: slices read only their own pages
            meta = f.metadata() or {}
            ids, lengths = json.loads(meta["ids"]), json.loads(meta["lengths"])
        except (SafetensorError, OSError, KeyError, ValueError) as exc:
            raise GeodistillError(
                f"{path}: unreadable teacher cache shard ({exc}); rebuild the cache"
            ) from exc
        self._files.append(f)
        self._slices.append({name: f.get_slice(name) for name in f.keys()})
        start = 0
        for row, (uid, n) in enumerate(zip(ids, lengths, strict=True)):
            self._where[uid] = _Place(s, row, start, n)
            start += n

    @property
    def offer(self) -> TeacherOffer:
        """What the stored outputs carry besides logits (the ``TeacherProvider`` contract)."""
        return TeacherOffer(
            reads_features=False,
            encoder_states=bool(self.index["store_encoder"]),
            encoder_pool=self.index["encoder_pool"],
            cross_kv_layers=tuple(self.index["cross_kv_layers"]),
        )

    @property
    def teacher_config(self) -> dict:
        """The teacher's HF config (d_model, layers, vocab_size, ...) without loading the teacher."""
        return self.index["teacher_config"]

    @property
    def processor_dir(self) -> Path:
        """The teacher's saved processor (``WhisperProcessor.from_pretrained`` reads it)."""
        return self.cache_dir / "processor"

    def __len__(self) -> int:
        return len(self._where)

    def _place(self, uid: str, dec: torch.Tensor, labels: torch.Tensor) -> _Place:
        place = self._where.get(uid)
        if place is None:
            raise GeodistillError(
                f"{self.cache_dir}: utterance {uid!r} is not in the teacher cache (built over "
                f"{self.index['data']}); rebuild the cache for this data"
            )
        n = place.length
        cached = self._slices[place.shard]["decoder_input_ids"][place.start : place.start + n]
        same = (
            n <= dec.shape[0]
            and torch.equal(dec[:n].long(), cached.long())
            and bool((labels[n:] == IGNORE_INDEX).all())
            and int(labels[n - 1]) != IGNORE_INDEX
        )
        if not same:
            raise GeodistillError(
                f"{self.cache_dir}: utterance {uid!r}: the batch's label tokens differ from the "
                "cached ones (text, tokenizer, prompt or normalise_text changed); rebuild the cache"
            )
        return place

    def __call__(self, batch: dict) -> TeacherOutputs:
        """batch: a WhisperCollator batch (ids, decoder_input_ids (B, L), labels (B, L)) -> TeacherOutputs."""
        dec, labels = batch["decoder_input_ids"], batch["labels"]
        places = [self._place(uid, dec[i], labels[i]) for i, uid in enumerate(batch["ids"])]
        (b, length), k = dec.shape, self.index["top_k"]
        vocab, width = self.index["vocab_size"], self.index["teacher_config"]["d_model"]
        lse = torch.full((b, length), math.log(vocab))  # padding: a uniform teacher, consistent with lse
        values = torch.zeros(b, length, k)
        indices = torch.arange(k).expand(b, length, k).clone()
        hidden = torch.zeros(b, length, width)
        logits = torch.zeros(b, length, vocab) if self.index["full_logits"] else None
        lse_t = lse.clone() if self.temperature != 1.0 else lse  # padding: logsumexp(0 / T) = log V too
        for i, p in enumerate(places):
            get, span, n = self._slices[p.shard], slice(p.start, p.start + p.length), p.length
            lse[i, :n] = get["logsumexp"][span]
            values[i, :n] = get["topk_logprobs"][span].float() + lse[i, :n, None]  # raw logits again
            indices[i, :n] = get["topk_indices"][span].long()
            hidden[i, :n] = get["decoder_hidden"][span].float()
            if logits is not None:
                logits[i, :n] = get["logprobs"][span].float() + lse[i, :n, None]
            if lse_t is not lse:
                lse_t[i, :n] = get[lse_name(self.temperature)][span]
        encoder = self._per_utterance("encoder_hidden", places) if self.index["store_encoder"] else None
        cross_kv = {
            j: tuple(self._per_utterance(name, places) for name in cross_kv_names(j))
            for j in self.index["cross_kv_layers"]
        }
        return TeacherOutputs(
            logits=logits,
            topk_values=values,
            topk_indices=indices,
            logsumexp=lse_t,
            decoder_hidden=hidden,
            encoder_hidden=encoder,
            cross_kv=cross_kv or None,
            logsumexp_temperature=self.temperature,
        )

    def _per_utterance(self, name: str, places: list[_Place]) -> torch.Tensor:
        """(B, ...) stack of a per-utterance tensor (encoder states, cross K/V), in the storage dtype."""
        return torch.stack([self._slices[p.shard][name][p.row : p.row + 1][0] for p in places])


@contextlib.contextmanager
def _on_device(teacher_model, device: str):
    """A loaded teacher moved to ``device`` for the build (a run keeps its teacher on the CPU, where only
    its weights are needed) and moved back afterwards."""
    if teacher_model is None:
        yield None
        return
    from geodistill.models import resolve_device

    model, processor = teacher_model
    home = next(model.parameters()).device
    model.to(resolve_device(device))
    try:
        yield model, processor
    finally:
        model.to(home)


def cached_teacher_for(
    cfg: Config, teacher_model=None, cross_kv_layers: tuple[int, ...] = ()
) -> CachedTeacher:
    """The run's teacher read from ``cfg.teacher_cache``, built first over ``cfg.data.train`` if absent or
    partial (top_k 64, fp16, and the cross-attention K/V of ``cross_kv_layers``; use ``geodistill cache``
    for other choices). A complete cache is used as it is, whichever cross-attention layers it holds.

    teacher_model: the run's loaded (model, processor), when it has one: the cache must then hold this
    teacher's weights (fingerprint) and decoder prompt. Without it the cache must name ``cfg.teacher``.
    A cache for another teacher, data or label settings is refused naming the field.
    """
    from geodistill.data import prompt_ids

    d, out = cfg.data, Path(cfg.teacher_cache)
    if d.train is None:
        raise DataError("data.train: no training data spec given (the teacher cache is built over it)")
    label = {
        "language": d.language,
        "normalise_text": d.normalise_text,
        "min_duration": d.min_duration,
        "max_duration": d.max_duration,
    }
    if not is_complete(out):
        log.info("teacher cache %s: building it over %s (once; later runs and trials reuse it)", out, d.train)
        with _on_device(teacher_model, cfg.train.teacher_device) as teacher:
            build_cache(
                teacher or cfg.teacher,
                d.train,
                out,
                batch_size=cfg.train.batch_size,
                device=cfg.train.teacher_device,
                temperatures=(cfg.loss.temperature,),
                cross_kv_layers=cross_kv_layers,
                **label,
            )
    expect = {"data": d.train, **label}
    if teacher_model is None:
        expect["teacher"] = cfg.teacher
    else:
        model, processor = teacher_model
        expect["teacher_fingerprint"] = teacher_fingerprint(model)
        expect["prompt"] = prompt_ids(processor, model, language=d.language)
    return CachedTeacher(out, expect, temperature=cfg.loss.temperature)
