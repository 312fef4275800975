"""Real tiny.en on real recorded speech (LibriVox clips shipped with pocketsphinx, an alsa-utils prompt)."""

import json
import re
from pathlib import Path

import pytest

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def librivox_rows(n: int) -> list[dict]:
    """Manifest rows of the first ``n`` LibriVox clips, transcripts from pocketsphinx's test data."""
    if not (LIBRIVOX / "transcription").is_file():
        pytest.skip("pocketsphinx test data not installed (apt-get install pocketsphinx-testdata)")
    rows = []
    for line in (LIBRIVOX / "transcription").read_text().splitlines()[:n]:
        m = re.fullmatch(r"<s> (.*) </s> \((.*)\)", line.strip())
        rows.append({"audio_filepath": str(LIBRIVOX / f"{m[2]}.wav"), "text": m[1], "speaker": "librivox"})
    return rows


@pytest.mark.integration
def test_tiny_en_on_real_speech(tmp_path, alsa_wav):
    from geodistill.evaluate.run import evaluate

    rows = librivox_rows(3) + [{"audio_filepath": str(alsa_wav), "text": "Front center", "speaker": "alsa"}]
    manifest = tmp_path / "real.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    r = evaluate("tiny.en", str(manifest), out=tmp_path / "eval", device="cpu", batch_size=4)
    assert r["n_utterances"] == 4 and r["n_skipped"] == 0
    assert r["wer"] < 0.35  # tiny.en gets these nearly right; a broken pipeline scores near or above 1
    assert r["wer_raw"] > r["wer"]  # references are lower-case without punctuation, tiny.en's output is not
    assert 0 < r["rtf"] < 50 and r["peak_memory_mb"] > 0
    hyps = [
        json.loads(x)["hypothesis"] for x in (tmp_path / "eval" / "utterances.jsonl").read_text().splitlines()
    ]
    assert "dashwood" in hyps[0].lower() and "center" in hyps[3].lower()  # rows stay in manifest order
