"""Probing at start-up (geodistill.data.probes): parallel, stored per spec, reused by the next start."""

from __future__ import annotations

import json
import os

import numpy as np
import soundfile as sf

from geodistill.data import BadSamples, load_spec, probes
from geodistill.data.audio import probe


def _manifest(tmp_path, n: int = 6):
    rows = []
    for i in range(n):
        path = tmp_path / f"clip{i}.wav"
        sf.write(path, np.zeros(16000 + 1600 * i, np.float32), 16000)
        rows.append({"audio_filepath": path.name, "text": f"clip {i}"})
    (tmp_path / "broken.wav").write_bytes(b"RIFF not audio")
    rows.append({"audio_filepath": "broken.wav", "text": "broken"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _counting(monkeypatch) -> list[str]:
    calls: list[str] = []

    def counted(ref):
        calls.append(str(ref))
        return probe(ref)

    monkeypatch.setattr(probes, "probe", counted)
    return calls


def test_second_start_probes_no_file_and_gives_the_same_result(tmp_path, monkeypatch):
    manifest = _manifest(tmp_path)
    calls = _counting(monkeypatch)
    first_bad, second_bad = BadSamples(), BadSamples()
    first = load_spec(manifest, bad=first_bad)
    assert len(calls) == 7  # every file once, the broken one included
    calls.clear()
    second = load_spec(manifest, bad=second_bad)
    assert calls == []  # only stat-ed: sizes and mtimes unchanged
    assert second == first and [u.duration for u in first] == [1.0 + 0.1 * i for i in range(6)]
    assert second_bad.items == first_bad.items and "broken.wav" in first_bad.items[0]["item"]


def test_a_changed_file_is_probed_again_and_its_new_duration_used(tmp_path, monkeypatch):
    manifest = _manifest(tmp_path)
    load_spec(manifest)
    calls = _counting(monkeypatch)
    changed = tmp_path / "clip2.wav"
    sf.write(changed, np.zeros(48000, np.float32), 16000)
    os.utime(changed, ns=(1, 1))  # a new mtime even on a coarse-clock file system
    utts = load_spec(manifest)
    assert calls == [str(changed)]
    assert {u.audio: u.duration for u in utts}[str(changed)] == 3.0


def test_an_unreadable_store_is_ignored_and_rewritten(tmp_path, monkeypatch):
    manifest = _manifest(tmp_path, n=2)
    load_spec(manifest)
    store = probes.store_path("manifest", manifest)
    store.write_text("{not json")
    calls = _counting(monkeypatch)
    assert len(load_spec(manifest)) == 2 and len(calls) == 3
    assert json.loads(store.read_text())["format"] == probes.FORMAT


def test_parallel_probing_matches_serial(tmp_path):
    manifest = _manifest(tmp_path)
    refs = [str(p) for p in sorted(tmp_path.glob("*.wav"))]
    one, many = probes.probe_files(refs, None, threads=1), probes.probe_files(refs, None, threads=4)
    assert {r: str(v) for r, v in one.items()} == {r: str(v) for r, v in many.items()}
    assert isinstance(many[str(tmp_path / "broken.wav")], probes.BadSampleError)
    assert manifest.is_file()
