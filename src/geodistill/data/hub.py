"""``hub:`` data specs: Hugging Face Hub speech datasets streamed for training (resumable exactly) and for
evaluation (the first rows only, with a limit).

Spec: ``hub:DATASET[:CONFIG]:SPLIT``, several joined with ``+`` (for training interleaved until all are
exhausted, as distil-whisper's training scripts do; for evaluation read one after the other, each once), e.g.
``hub:openslr/librispeech_asr:clean:train.100+openslr/librispeech_asr:other:train.500``. DATASET may also be
a local folder in the Hub's layout (``hub:/data/my_set:test`` for ``/data/my_set/data/test-*.parquet``).
Each is opened with ``datasets.load_dataset(..., streaming=True)``; the audio column is read undecoded
(``Audio(decode=False)``) and decoded here (soundfile + soxr, as local files), so a corrupt or unreadable
example is logged to BadSamples with its reason and skipped, like the same problems in local specs, and the
duration filter [min_duration, max_duration] applies the same way. A language column (language, lang,
locale) gives each row Whisper's language code, as a manifest's does; an unknown one skips the row.

Position: ``{"epoch", "offset"}`` where offset = raw examples consumed this epoch (kept or skipped), plus
``hf`` = the ``datasets`` iterable's own state_dict when no shuffle buffer is used. Resuming with it
continues with exactly the next example: via ``load_state_dict`` (cheap: seeks the shard) without a shuffle
buffer; with one, by passing over the first ``offset`` examples undecoded (they are downloaded again), since
a shuffle buffer's content is not part of the ``datasets`` state.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np
import soundfile as sf
import soxr

from geodistill.contracts import Batch
from geodistill.data.audio import SAMPLE_RATE, non_finite
from geodistill.data.bad import BadSamples
from geodistill.data.specs import AUDIO_KEYS, LANGUAGE_KEYS, SPEAKER_KEYS, TEXT_KEYS, Utterance
from geodistill.data.tokens import language_code
from geodistill.errors import DataError
from geodistill.optional import require

PREFIX = "hub:"


@dataclass(frozen=True)
class HubSource:
    path: str  # Hub dataset id ("openslr/librispeech_asr") or a builder ("parquet", "audiofolder")
    name: str | None  # config ("clean"), if any
    split: str  # "train.100"
    kwargs: dict = field(default_factory=dict)  # more load_dataset arguments (data_files=... for local data)

    def __str__(self) -> str:
        return PREFIX + ":".join(p for p in (self.path, self.name, self.split) if p)


def is_hub_spec(spec) -> bool:
    return str(spec).startswith(PREFIX)


def parse_hub_spec(spec: str) -> list[HubSource]:
    """``hub:a/b:cfg:split+c/d:split`` -> HubSources; DataError naming the part that is malformed."""
    if not is_hub_spec(spec):
        raise DataError(f"{spec}: not a hub: spec (hub:DATASET[:CONFIG]:SPLIT[+...])")
    sources = []
    for part in spec[len(PREFIX) :].split("+"):
        bits = part.removeprefix(PREFIX).split(":")
        if len(bits) not in (2, 3) or not all(bits):
            raise DataError(f"{spec}: {part!r} is not DATASET[:CONFIG]:SPLIT")
        sources.append(HubSource(bits[0], bits[1] if len(bits) == 3 else None, bits[-1]))
    return sources


@dataclass(frozen=True)
class Columns:
    """The columns of a streamed dataset that geodistill reads."""

    audio: str  # an Audio feature, else the first of AUDIO_KEYS present
    text: str  # the first of TEXT_KEYS present
    id: str | None  # "id", when there is one
    speaker: str | None  # the first of SPEAKER_KEYS present
    language: str | None  # the first of LANGUAGE_KEYS present


def columns(features, where: str) -> Columns:
    """The columns to read from a dataset's features; DataError naming ``where`` and the columns it has."""
    datasets = require("datasets", "hf", "streaming Hub datasets")
    if features is None:
        raise DataError(f"{where}: the dataset declares no columns (features): cannot find audio and text")
    cols = list(features)
    audio = next((c for c in cols if isinstance(features[c], datasets.Audio)), None)
    audio = audio or next((c for c in AUDIO_KEYS if c in cols), None)
    text = next((c for c in TEXT_KEYS if c in cols), None)
    has = ", ".join(cols) or "none"
    if audio is None:
        wanted = ", ".join(AUDIO_KEYS)
        raise DataError(f"{where}: no audio column (it has {has}; looked for an Audio feature or {wanted})")
    if text is None:
        raise DataError(f"{where}: no text column (it has {has}; looked for {', '.join(TEXT_KEYS)})")
    return Columns(
        audio,
        text,
        "id" if "id" in cols else None,
        next((c for c in SPEAKER_KEYS if c in cols), None),
        next((c for c in LANGUAGE_KEYS if c in cols), None),
    )


def open_source(src: HubSource, k: int):
    """One streamed source with columns blob (audio bytes) / file (audio path), text, id, speaker, language,
    source."""
    datasets = require("datasets", "hf", "streaming Hub datasets")
    try:
        ds = datasets.load_dataset(src.path, src.name, split=src.split, streaming=True, **src.kwargs)
    except Exception as e:  # noqa: BLE001 - the Hub client raises many types; one line names the source
        first = (str(e).strip().splitlines() or [""])[0]
        raise DataError(f"{src}: cannot open ({type(e).__name__}: {first})") from None
    col = columns(ds.features, str(src))
    ds = ds.cast_column(col.audio, datasets.Audio(decode=False))

    def value(row: dict, name: str | None) -> str | None:
        return None if name is None or row[name] is None else str(row[name])

    def norm(row: dict) -> dict:
        audio = row[col.audio]
        audio = {"bytes": None, "path": audio} if isinstance(audio, str) else (audio or {})
        return {
            "blob": audio.get("bytes"),  # plain columns: re-encoding an Audio value needs torchcodec
            "file": audio.get("path"),
            "text": str(row[col.text] or ""),
            "id": value(row, col.id) or audio.get("path") or f"{src.path}:{src.split}:{row[col.text]}",
            "speaker": value(row, col.speaker),
            "language": value(row, col.language),
            "source": k,
        }

    remove = list(ds.column_names) if ds.column_names else None
    return ds.map(norm, remove_columns=remove)


def open_hub(sources: list[HubSource], seed: int = 0):
    """The sources interleaved (all exhausted) into one ``datasets.IterableDataset``."""
    datasets = require("datasets", "hf", "streaming Hub datasets")
    parts = [open_source(s, k) for k, s in enumerate(sources)]
    if len(parts) == 1:
        return parts[0]
    return datasets.interleave_datasets(parts, seed=seed, stopping_strategy="all_exhausted")


def decode(example: dict) -> np.ndarray:
    """(n,) float32 16 kHz mono samples of an undecoded Audio value; ValueError/RuntimeError if unreadable."""
    if example.get("blob"):
        x, rate = sf.read(io.BytesIO(example["blob"]), dtype="float32", always_2d=True)
    elif example.get("file"):
        x, rate = sf.read(example["file"], dtype="float32", always_2d=True)
    else:
        raise ValueError("no audio bytes or path")
    reason = non_finite(x)
    if reason:
        raise ValueError(reason)
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if rate != SAMPLE_RATE and mono.size:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


class HubStream:
    """Iterates (Utterance, audio) over one epoch of a streamed dataset from a recorded position.

    ``position()`` after any item is where a resumed stream continues with exactly the next example.
    """

    def __init__(
        self,
        open_ds: Callable[[], object],
        bad: BadSamples | None = None,
        min_duration: float = 1.0,
        max_duration: float = 30.0,
        seed: int = 0,
        shuffle_buffer: int = 0,
        epoch: int = 0,
        offset: int = 0,
        hf: dict | None = None,
    ):
        self.bad = bad if bad is not None else BadSamples()
        self.lo, self.hi, self.epoch, self.offset = min_duration, max_duration, epoch, offset
        ds = open_ds()
        if shuffle_buffer:
            ds = ds.shuffle(seed=seed, buffer_size=shuffle_buffer)
        ds.set_epoch(epoch)
        self._skip = 0  # examples to pass over undecoded (same pipeline, so exactly the same order)
        if offset and hf is not None and not shuffle_buffer:
            ds.load_state_dict(hf)
        elif offset:
            self._skip = offset
        self.ds, self.shuffled = ds, bool(shuffle_buffer)

    def position(self) -> dict:
        pos = {"epoch": self.epoch, "offset": self.offset}
        if not self.shuffled:
            pos["hf"] = self.ds.state_dict()
        return pos

    def __iter__(self) -> Iterator[tuple[Utterance, np.ndarray]]:
        for ex in self.ds:
            if self._skip:
                self._skip -= 1
                continue
            self.offset += 1
            utt = Utterance(ex["id"], f"hub://{ex['id']}", ex["text"].strip(), ex["speaker"])
            if not utt.text:
                self.bad.add(utt, "empty transcript")
                continue
            raw = ex.get("language")
            language = language_code(raw) if raw else None
            if raw and language is None:
                self.bad.add(utt, f"language {raw!r} is not a Whisper language (e.g. 'en', 'de', 'english')")
                continue
            try:
                audio = decode(ex)
            except (RuntimeError, ValueError, OSError) as e:
                self.bad.add(utt, f"unreadable audio ({(str(e) or type(e).__name__).splitlines()[0]})")
                continue
            seconds = audio.size / SAMPLE_RATE
            if seconds < self.lo:
                self.bad.add(utt, f"too short ({seconds:.2f} s < min_duration {self.lo:g} s)")
            elif seconds > self.hi:
                self.bad.add(utt, f"too long ({seconds:.2f} s > max_duration {self.hi:g} s)")
            else:
                yield replace(utt, language=language, duration=seconds), audio


class StreamBatches:
    """Endless batches from a ``HubStream`` over epochs, with ``BatchStream``'s state_dict contract.

    ``state_dict()`` -> ``{"epoch", "offset", "hf"?}`` (offset: raw examples consumed this epoch) and the
    constructor takes the same keys back, so a checkpoint's ``data`` entry resumes it exactly.
    ``to_sample(utt, audio)`` turns a decoded utterance into a training sample (None: skip it), e.g.
    ``SpeechDataset.sample``; ``collate`` batches samples as for the map-style set. Single process.
    """

    def __init__(
        self, make_stream: Callable[..., HubStream], to_sample, collate, batch_size: int, **position
    ):
        self.make_stream, self.to_sample, self.collate, self.batch_size = (
            make_stream,
            to_sample,
            collate,
            batch_size,
        )
        self.stream = make_stream(**position)
        self._it = iter(self.stream)
        self._empty_epochs = 0

    def _next_sample(self) -> dict:
        while True:
            try:
                utt, audio = next(self._it)
            except StopIteration:
                if self._empty_epochs:
                    raise DataError(
                        "data.train: a whole epoch of the hub stream gave no usable example"
                    ) from None
                self._empty_epochs += 1
                self.stream = self.make_stream(epoch=self.stream.epoch + 1, offset=0, hf=None)
                self._it = iter(self.stream)
                continue
            sample = self.to_sample(utt, audio)
            if sample is not None:
                self._empty_epochs = 0
                return sample

    def __next__(self) -> Batch:
        return self.collate([self._next_sample() for _ in range(self.batch_size)])

    def __iter__(self) -> StreamBatches:
        return self

    def state_dict(self) -> dict:
        return self.stream.position()


def hub_batches(
    spec: str,
    train_set,
    collate,
    batch_size: int,
    seed: int,
    bad: BadSamples,
    min_duration: float = 1.0,
    max_duration: float = 30.0,
    shuffle_buffer: int = 1000,
    rank: int = 0,
    world: int = 1,
    **position,
) -> StreamBatches:
    """The training batch stream of a ``hub:`` spec, a drop-in for ``BatchStream`` (same state_dict keys
    back into ``**position``). ``train_set.sample(utt, audio)`` makes each sample (a SpeechDataset);
    with ``world`` > 1 each rank streams its own shards (``datasets.distributed.split_dataset_by_node``)."""
    sources = parse_hub_spec(spec)

    def open_ds():
        ds = open_hub(sources, seed)
        if world > 1:
            from datasets.distributed import split_dataset_by_node  # noqa: PLC0415 (optional extra [hf])

            ds = split_dataset_by_node(ds, rank=rank, world_size=world)
        return ds

    def make_stream(epoch: int = 0, offset: int = 0, hf: dict | None = None) -> HubStream:
        train_set.epoch = epoch  # the augmentation draws' epoch (data.augment)
        return HubStream(open_ds, bad, min_duration, max_duration, seed, shuffle_buffer, epoch, offset, hf)

    return StreamBatches(make_stream, train_set.sample, collate, batch_size, **position)


def hub_utterances(
    spec: str,
    bad: BadSamples,
    limit: int | None = None,
    min_duration: float = 1.0,
    max_duration: float = 30.0,
) -> Iterator[Utterance]:
    """The usable rows of a ``hub:`` spec for evaluation, in stream order, each Utterance holding its decoded
    clip in ``samples``; the sources joined with ``+`` are read one after the other, each once.

    Every source is opened here, before the first row is read, so a bad spec (unknown split, no audio
    column) fails at once in one line. Reading stops after ``limit`` usable rows: the stream fetches only
    the shards (row groups) those rows are in. Rows that decode badly, have no transcript, an unknown
    language, a duration outside [min_duration, max_duration] or an id already seen go to ``bad``.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for all), got {limit}")
    opened = [open_source(src, k) for k, src in enumerate(parse_hub_spec(spec))]

    def rows() -> Iterator[Utterance]:
        seen: set[str] = set()
        for ds in opened:
            stream = HubStream(lambda d=ds: d, bad, min_duration, max_duration)
            for utt, audio in stream:
                if utt.id in seen:
                    bad.add(utt, f"duplicate id {utt.id!r}")
                    continue
                seen.add(utt.id)
                yield replace(utt, samples=audio)
                if limit is not None and len(seen) >= limit:
                    return

    return rows()
