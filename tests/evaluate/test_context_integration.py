"""Real tiny.en on real recorded speech at dynamic audio context (the encoder sees the clip + a margin)."""

import pytest

from tests.evaluate.test_integration import librivox_rows


@pytest.mark.integration
def test_tiny_en_transcribes_real_speech_over_a_short_context(alsa_wav):
    from geodistill.evaluate.transcribe import transcribe_files
    from geodistill.models import load_whisper

    model, processor = load_whisper("tiny.en", device="cpu")
    seen: list[int] = []
    model.get_encoder().layer_norm.register_forward_hook(lambda m, i, o: seen.append(o.shape[1]))
    paths = [alsa_wav, librivox_rows(1)[0]["audio_filepath"]]
    texts = transcribe_files((model, processor), paths, audio_context="dynamic", context_margin=50)
    assert len(seen) == 1 and seen[0] < 1500 / 2  # one batch: the longer clip (< 10 s) + 50 positions
    assert len(texts) == 2 and all(t.strip() for t in texts)
    assert "center" in texts[0].lower()  # stock tiny.en already hears a 1.4-s prompt at clip + 1 s
