"""hub: specs, streamed offline through the same code path (load_dataset("parquet", streaming=True)): bad
samples and the duration filter are logged, and a recorded position resumes with exactly the next example."""

from __future__ import annotations

import io
import json

import pytest
import soundfile as sf

from geodistill.data import hub
from geodistill.data.bad import BadSamples
from geodistill.errors import DataError

from .conftest import tone

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pytest.importorskip("datasets")


def short_shutdown_sleep(monkeypatch) -> None:
    """datasets sleeps SLEEP_TIME_ON_THREADS_SHUTDOWN (5 s) each time a parquet stream is exhausted or closed,
    against pyarrow's crash when the interpreter exits right after a scan (apache/arrow#39862, where 0.1 s is
    reported to suffice). These tests close dozens of streams in a process that goes on running: 0.1 s."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.1)


@pytest.fixture(autouse=True)
def _short_shutdown_sleep(monkeypatch):
    short_shutdown_sleep(monkeypatch)


def _flac(seconds: float, seed: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, tone(seconds, seed=seed), 16000, format="FLAC")
    return buf.getvalue()


def _parquet(folder, n: int = 12) -> list[str]:
    """Two shards of n rows: row 3 corrupt audio, row 5 too long (31 s), row 7 empty text; the rest fine."""
    rows = []
    for i in range(n):
        audio = b"not audio" if i == 3 else _flac(31.0 if i == 5 else 1.0 + 0.1 * i, i)
        rows.append({"audio": {"bytes": audio, "path": f"{i}.flac"}, "text": "" if i == 7 else f"utt {i}",
                     "id": f"u{i:02d}", "speaker_id": i % 3})  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k, part in enumerate((rows[: n // 2], rows[n // 2 :])):
        files.append(str(folder / f"shard{k}.parquet"))
        pq.write_table(pa.Table.from_pylist(part), files[-1])
    return files


def write_hub_folder(root, split: str, rows: list[dict]):
    """A local dataset in the Hub's layout (``root/data/<split>-00000-of-00001.parquet``) holding ``rows``;
    ``hub:<root>:<split>`` opens it, as ``load_dataset(root)`` infers a Parquet dataset with that split."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def hub_rows(n: int, corrupt=(), empty=(), languages=None) -> list[dict]:
    """``n`` rows as the Hub stores speech (an ``audio`` struct {bytes, path} + ``text`` + ``id``): the rows
    in ``corrupt`` hold bytes that are no audio, those in ``empty`` no transcript; ``languages`` cycles."""
    rows = []
    for i in range(n):
        audio = b"not audio" if i in corrupt else _flac(1.0 + 0.1 * i, i)
        row = {"audio": {"bytes": audio, "path": f"{i}.flac"}, "text": "" if i in empty else f"utt {i}",
               "id": f"u{i:02d}"}  # fmt: skip
        if languages:
            row["language"] = languages[i % len(languages)]
        rows.append(row)
    return rows


def _stream(files, **kw) -> hub.HubStream:
    src = hub.HubSource("parquet", None, "train", {"data_files": {"train": files}})
    return hub.HubStream(lambda: hub.open_hub([src]), **kw)


def test_parse_hub_spec_reads_dataset_config_split_joined_with_plus():
    got = hub.parse_hub_spec("hub:openslr/librispeech_asr:clean:train.100+mozilla/cv:train")
    assert got == [
        hub.HubSource("openslr/librispeech_asr", "clean", "train.100"),
        hub.HubSource("mozilla/cv", None, "train"),
    ]
    with pytest.raises(DataError, match="'openslr/librispeech_asr' is not DATASET"):
        hub.parse_hub_spec("hub:openslr/librispeech_asr")
    assert hub.is_hub_spec("hub:x:train") and not hub.is_hub_spec("data/train")


def test_stream_skips_bad_samples_and_filters_durations(tmp_path):
    bad = BadSamples()
    items = list(_stream(_parquet(tmp_path), bad=bad, min_duration=1.0, max_duration=30.0))
    assert [u.id for u, _ in items] == [f"u{i:02d}" for i in range(12) if i not in (3, 5, 7)]
    assert items[0][0].speaker == "0" and items[0][0].text == "utt 0" and items[0][1].size == 16000
    reasons = {e["item"].split("//")[-1]: e["reason"] for e in bad.items}
    assert reasons["u03"].startswith("unreadable audio") and reasons["u05"].startswith("too long (31.00 s")
    assert reasons["u07"] == "empty transcript"


@pytest.mark.parametrize("shuffle_buffer", [0, 4])
def test_position_resumes_with_exactly_the_next_example(tmp_path, shuffle_buffer):
    files = _parquet(tmp_path)
    full = [u.id for u, _ in _stream(files, shuffle_buffer=shuffle_buffer, seed=1, epoch=2)]
    for k in (1, 4, 7):
        s = _stream(files, shuffle_buffer=shuffle_buffer, seed=1, epoch=2)
        it = iter(s)
        head = [next(it)[0].id for _ in range(k)]
        pos = s.position()
        assert ("hf" in pos) == (shuffle_buffer == 0) and pos["epoch"] == 2
        rest = [u.id for u, _ in _stream(files, shuffle_buffer=shuffle_buffer, seed=1, **pos)]
        assert head + rest == full
    if shuffle_buffer:
        assert sorted(full) == sorted(u.id for u, _ in _stream(files)) and full != sorted(full)


def test_hub_style_audio_feature_and_interleaved_sources(tmp_path):
    """A parquet shard as the Hub stores one (features in the schema: an Audio column), text in "sentence"."""
    rows = [
        {"audio": {"bytes": _flac(1.2, i), "path": f"a{i}.flac"}, "sentence": f"clip {i}"} for i in range(3)
    ]
    features = {"audio": {"_type": "Audio"}, "sentence": {"dtype": "string", "_type": "Value"}}
    table = pa.Table.from_pylist(rows)
    meta = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "cv.parquet")
    cv = hub.HubSource("parquet", None, "train", {"data_files": {"train": [str(tmp_path / "cv.parquet")]}})
    pqs = hub.HubSource("parquet", None, "train", {"data_files": {"train": _parquet(tmp_path / "pq", 4)}})
    items = list(hub.HubStream(lambda: hub.open_hub([cv])))
    assert [(u.id, u.text) for u, _ in items] == [
        ("a0.flac", "clip 0"),
        ("a1.flac", "clip 1"),
        ("a2.flac", "clip 2"),
    ]
    both = [u.text for u, _ in hub.HubStream(lambda: hub.open_hub([cv, pqs], seed=0))]
    # all_exhausted: the shorter source restarts until the longer one ends (row 3 of pqs is corrupt)
    assert set(both) == {"clip 0", "clip 1", "clip 2", "utt 0", "utt 1", "utt 2"} and both.count("utt 0") == 1


def test_stream_batches_state_dict_resumes_the_same_batches(tmp_path):
    files = _parquet(tmp_path)

    def make(**pos):
        return _stream(files, **pos)

    def to_sample(utt, audio):
        return {"id": utt.id, "n": audio.size}

    def ids(batch):
        return [s["id"] for s in batch]

    run = hub.StreamBatches(make, to_sample, ids, batch_size=4)
    first = [next(run) for _ in range(4)]  # 9 usable examples an epoch: crosses into epoch 1
    state = run.state_dict()
    assert state["epoch"] == 1 and set(state) == {"epoch", "offset", "hf"}
    later = [next(run) for _ in range(3)]
    resumed = hub.StreamBatches(make, to_sample, ids, batch_size=4, **state)
    assert [next(resumed) for _ in range(3)] == later
    assert (
        first[0] == ["u00", "u01", "u02", "u04"] and first[2][:1] == ["u11"] and first[2][1:] == first[0][:3]
    )


def test_hub_specs_are_not_listed_like_local_specs():
    from geodistill.data import load_spec

    with pytest.raises(DataError, match="hub: specs are streamed"):
        load_spec("hub:openslr/librispeech_asr:clean:validation")


def test_hub_batches_make_whisper_batches_and_resume(tmp_path, monkeypatch, tiny_processor):
    from geodistill.data.collate import WhisperCollator
    from geodistill.data.dataset import SpeechDataset

    files = _parquet(tmp_path)
    local = [hub.HubSource("parquet", None, "train", {"data_files": {"train": files}})]
    monkeypatch.setattr(hub, "parse_hub_spec", lambda spec: local)  # the Hub itself is not reachable here
    bad = BadSamples()
    train_set = SpeechDataset([], tiny_processor, bad=bad)
    collate = WhisperCollator([50257], pad_id=50256)

    def make(**pos):
        return hub.hub_batches("hub:x:train", train_set, collate, 2, 0, bad, shuffle_buffer=4, **pos)

    stream = make()
    first = next(stream)
    assert first["input_features"].shape == (2, 80, 3000) and first["labels"].shape[0] == 2
    state = stream.state_dict()
    assert set(state) == {"epoch", "offset"} and state["offset"] >= 2  # shuffled: resumes by re-reading
    later = [next(stream)["ids"] for _ in range(5)]
    resumed = make(**state)
    assert [next(resumed)["ids"] for _ in range(5)] == later  # crosses an epoch end too
    assert {e["reason"].split(" (")[0] for e in bad.items} >= {"unreadable audio", "too long"}


def test_hub_utterances_read_a_local_hub_folder_and_stop_at_the_limit(tmp_path):
    """hub:<folder>:<split> streams a folder in the Hub's layout; the limit stops the stream: the corrupt row
    after it is never decoded (not logged), those before it are logged and skipped."""
    write_hub_folder(
        tmp_path / "set", "test", hub_rows(8, corrupt=(1, 7), empty=(2,), languages=["en", "German"])
    )
    spec = f"hub:{tmp_path / 'set'}:test"
    bad = BadSamples()
    got = list(hub.hub_utterances(spec, bad, limit=3))
    assert [u.id for u in got] == ["u00", "u03", "u04"]
    assert [u.language for u in got] == ["en", "de", "en"] and got[0].audio == "hub://u00"
    assert got[0].samples.shape == (16000,) and got[0].duration == pytest.approx(1.0)
    assert {e["item"]: e["reason"].split(" (")[0] for e in bad.items} == {
        "hub://u01": "unreadable audio",
        "hub://u02": "empty transcript",
    }
    everything = list(hub.hub_utterances(spec, bad := BadSamples()))
    assert len(everything) == 5 and "hub://u07" in {e["item"] for e in bad.items}


def test_hub_utterances_read_joined_sources_once_each_and_drop_repeated_ids(tmp_path):
    write_hub_folder(tmp_path / "a", "test", hub_rows(2))
    write_hub_folder(tmp_path / "b", "test", hub_rows(3))  # ids u00, u01 again, then u02
    bad = BadSamples()
    got = list(hub.hub_utterances(f"hub:{tmp_path / 'a'}:test+{tmp_path / 'b'}:test", bad))
    assert [u.id for u in got] == ["u00", "u01", "u02"]
    assert [e["reason"] for e in bad.items] == ["duplicate id 'u00'", "duplicate id 'u01'"]


def test_a_bad_hub_spec_is_one_line_naming_it(tmp_path):
    rows = [{"clip": _flac(1.0, 0), "text": "hello"}]
    write_hub_folder(tmp_path / "noaudio", "test", rows)
    spec = f"hub:{tmp_path / 'noaudio'}:test"
    with pytest.raises(DataError) as err:
        hub.hub_utterances(spec, BadSamples())  # fails when called, before a row is read
    assert str(err.value).startswith(f"{spec}: no audio column (it has clip, text;") and "\n" not in str(
        err.value
    )
    write_hub_folder(tmp_path / "ok", "test", hub_rows(1))
    with pytest.raises(
        DataError, match=r":nope: cannot open \(ValueError: Bad split: nope. Available splits"
    ):
        hub.hub_utterances(f"hub:{tmp_path / 'ok'}:nope", BadSamples())
    with pytest.raises(ValueError, match="limit must be >= 1"):
        hub.hub_utterances(f"hub:{tmp_path / 'ok'}:test", BadSamples(), limit=0)
