"""Decoding: mono mix, soxr resampling to 16 kHz, segments, dataset-held bytes, real recorded speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from geodistill.data import SAMPLE_RATE, BadSampleError, Utterance, load_audio, load_spec, probe
from geodistill.data.audio import hf_ref

from .conftest import CLIPS, tone, write_hf


def _peak_hz(x: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / rate)[spectrum.argmax()])


@pytest.mark.parametrize(
    "rate, channels, fmt", [(8000, 1, "OGG"), (22050, 2, "WAV"), (44100, 1, "FLAC"), (16000, 1, "FLAC")]
)
def test_resampled_to_16k_mono_with_pitch_and_length_kept(tmp_path, rate, channels, fmt):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, tone(2.0, rate, freq=700.0, channels=channels), rate, format=fmt)
    x = load_audio(path)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size - 2 * SAMPLE_RATE) <= 2
    assert abs(_peak_hz(x) - 700.0) < 2.0
    assert probe(path) == pytest.approx(2.0, abs=1e-3)


def test_stereo_is_averaged(tmp_path):
    left, right = tone(1.0, freq=300.0), tone(1.0, freq=300.0, seed=1) * 0.0
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), SAMPLE_RATE, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(tmp_path / "s.wav"), left / 2, atol=1e-6)


def test_segment_of_an_utterance(tmp_path):
    x = tone(3.0)
    sf.write(tmp_path / "a.wav", x, SAMPLE_RATE, subtype="FLOAT")
    seg = load_audio(Utterance("a", str(tmp_path / "a.wav"), "t", offset=0.5, duration=1.0))
    np.testing.assert_array_equal(seg, x[8000:24000])
    with pytest.raises(BadSampleError, match="past the end"):
        load_audio(Utterance("a", str(tmp_path / "a.wav"), "t", offset=5.0))


def test_hf_rows_decode_from_bytes_with_soundfile(tmp_path):
    folder = write_hf(tmp_path / "hf")
    utts = load_spec(folder)
    assert utts[2].audio == hf_ref(folder, 2) and utts[2].audio.endswith("#2")
    x = load_audio(utts[2])  # 8 kHz OGG bytes inside the arrow file
    assert abs(x.size - CLIPS[2].seconds * SAMPLE_RATE) <= 2 and abs(_peak_hz(x) - 440.0) < 2.0
    with pytest.raises(BadSampleError, match="no row 9"):
        load_audio(hf_ref(folder, 9))


def test_real_recorded_speech(alsa_wav):
    x = load_audio(alsa_wav)  # 48 kHz "Front Center"
    info = sf.info(alsa_wav)
    assert info.samplerate == 48000
    assert abs(x.size - round(info.frames / 3)) <= 1
    assert 0.05 < np.abs(x).max() <= 1.0
