"""`geodistill data synth` / `data real` on the command line: flags checked at parse time, manifest out."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

from geodistill import cli
from geodistill.corpus import real, requirements

from ..data.conftest import tone


@pytest.mark.parametrize("flags", [["--hours", "0"], ["--hours", "1", "--val-minutes", "-1"], []])
def test_synth_rejects_bad_sizes_at_parse_time(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as e:
        cli.main(["data", "synth", str(tmp_path / "out"), *flags])
    assert e.value.code == 2 and not (tmp_path / "out").exists()
    assert "error:" in capsys.readouterr().err


def test_data_real_prints_the_summary_and_writes_the_manifest(tmp_path, capsys, monkeypatch):
    sf.write(tmp_path / "a.wav", tone(1.5), 16000)
    clip = real.RealClip(tmp_path / "a.wav", "hello there", "9001", "s", "pkg", "MIT")
    monkeypatch.setattr(real, "gather", lambda cache, fetch: [clip] if not fetch else [])
    monkeypatch.setattr(requirements, "missing", lambda purpose: [])  # the Debian recordings: not read here
    assert cli.main(["data", "real", str(tmp_path / "out"), "--no-fetch"]) == 0
    assert json.loads(capsys.readouterr().out)["utterances"] == 1
    assert json.loads((tmp_path / "out" / "manifest.jsonl").read_text())["text"] == "hello there"
