"""A whisper.cpp decoding engine: a model file written by ``geodistill.models.ggml.write_ggml``, run through
pywhispercpp (``pip install 'geodistill[whispercpp]'``).

Each clip is one ``whisper_full`` call: greedy, English, no timestamps, no prompt carried over from the
previous clip. whisper.cpp's logs are sent to /dev/null while it loads and decodes (file-descriptor level,
because they come from C; anything else written to stderr in those moments is dropped too).

A dynamic-context student (``geodistill.models.context``) runs with whisper.cpp's ``audio_ctx`` set per
clip to the clip's encoder positions plus the margin, ``ceil(ceil(n_samples / 160) / 2) + margin``, capped
at the model's 1500; a full-context model leaves ``audio_ctx`` at 0 (the whole 30-s window).

A dynamic-context model runs with flash attention off. whisper.cpp's flash-attention path cross-attends over
``audio_ctx`` rounded up to 256 positions (``GGML_PAD(n_audio_ctx, 256)``) and masks none of the extra ones:
they hold zeros in a fresh state and the encoder output of an earlier, longer clip after one, which the
decoder then reads. Measured on the demo student (111 real clips, q8_0, batch 1, longest first as
``evaluate`` orders them): WER 40.1 % with flash attention, 23.1 % without (23.0 % in transformers). Without
it the cross-attention takes exactly ``audio_ctx`` positions. A full-context model keeps whisper.cpp's
default (on), which was 15-25 % faster for the stock tiny.en here; its 36 extra positions (1500 -> 1536) stay
zeros, as every call fills the same 1500.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from geodistill.decoding.runtime import OutsideTorch
from geodistill.errors import GeodistillError, ModelLoadError
from geodistill.models.ggml_read import check_loadable, read_ggml
from geodistill.optional import require

AUDIO_CONTEXTS = ("full", "dynamic")  # geodistill.models.context.AUDIO_CONTEXTS
HOP = 160  # samples per log-Mel frame at 16 kHz
CONV_STRIDE = 2  # Mel frames per encoder position
# whisper.cpp returns no text at all for a clip under ~0.1 s; shorter clips get trailing zeros up to 1 s
# (whisper.cpp pads every clip with 30 s of zeros anyway, so this changes no encoder input)
MIN_SAMPLES = 16000
_OPEN: weakref.WeakSet[WhisperCppModel] = weakref.WeakSet()  # freed at exit, while Python still runs


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (where whisper.cpp's C code logs) to /dev/null for the duration."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def clip_positions(n_samples: int) -> int:
    """Encoder positions (20 ms each) a clip of ``n_samples`` 16-kHz samples covers."""
    return math.ceil(math.ceil(n_samples / HOP) / CONV_STRIDE)


class WhisperCppModel(OutsideTorch):
    """A whisper.cpp model file behind ``transcribe(audios) -> texts``.

    ``threads``: whisper.cpp's ``n_threads``. ``audio_context``: ``full`` or ``dynamic`` (the student's rule,
    ``geodistill.models.ggml.context_rule``); ``margin``: encoder positions after the clip (dynamic only).

    ``fallback`` off sets ``temperature_inc`` 0: greedy only. On (whisper.cpp's default; openai-whisper's
    CLI has the same schedule), each clip is first decoded greedily at temperature 0; when the result fails
    whisper.cpp's checks, an average token log-probability below -1.0 (``logprob_thold``) or, past 32
    tokens, an entropy of the last 32 tokens' counts below 2.4 (``entropy_thold``, whisper.cpp's stand-in
    for openai-whisper's gzip compression ratio: it catches repetition loops), the clip is decoded again by
    sampling at temperature 0.2, 0.4, ... up to 1.0 (``temperature_inc`` 0.2, ``best_of`` 5 candidates
    each) until a result passes.
    A clip the model cannot decode can therefore cost many times an ordinary one. ``geodistill evaluate``
    passes its ``--fallback`` (off by default) and ``transcribe`` its own default (on), as for every engine.
    """

    def __init__(
        self,
        model_file: Path,
        threads: int,
        audio_context: str = "full",
        margin: int = 64,
        fallback: bool = True,
    ):
        model_file = Path(model_file)
        if audio_context not in AUDIO_CONTEXTS:
            raise GeodistillError(f"audio_context: must be one of {AUDIO_CONTEXTS}, got {audio_context!r}")
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise GeodistillError(f"context_margin: must be an integer >= 0, got {margin!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise GeodistillError(f"threads: must be an integer >= 1, got {threads!r}")
        if not model_file.is_file():
            raise ModelLoadError(f"{model_file}: no such whisper.cpp model file")
        # whisper.cpp neither checks for short reads nor tells pywhispercpp it refused a file (its context
        # then crashes the process on first use): check the layout here first
        header = read_ggml(model_file, load_tensors=False)
        check_loadable(header)
        if header.dtype == "f32":
            raise ModelLoadError(
                f"{model_file}: an f32 whisper.cpp file; whisper.cpp's CPU convolution aborts the process on "
                "f32 weights (ggml-org/whisper.cpp#2557); write it as f16 or q8_0"
            )
        pw_model = require("pywhispercpp.model", "whispercpp", "--engine whispercpp", package="pywhispercpp")
        self.model_file = model_file
        self.threads = threads
        self.audio_context = audio_context
        self.margin = margin
        self.fallback = fallback
        self.n_audio_ctx = header.hparams["n_audio_ctx"]
        self._make = pw_model.Model
        self._model = None
        self._load()
        _OPEN.add(self)

    def _load(self) -> None:
        """(Re)make pywhispercpp's model: flash attention only at full context (module doc)."""
        self.close()
        with quiet_stderr():
            self._model = self._make(
                str(self.model_file),
                params_sampling_strategy=0,  # greedy
                n_threads=self.threads,
                language="en",
                translate=False,
                no_timestamps=True,
                no_context=True,
                print_progress=False,
                print_realtime=False,
                print_timestamps=False,
                print_special=False,
                temperature_inc=0.2 if self.fallback else 0.0,  # 0: no temperature fallback (greedy only)
                context_params={"flash_attn": self.audio_context == "full"},
            )
        self._flash = self.audio_context == "full"

    # The config geodistill's decoding reads (the rest of the interface: decoding.runtime.OutsideTorch).

    @property
    def config(self) -> SimpleNamespace:
        return SimpleNamespace(
            geodistill_audio_context=self.audio_context,
            geodistill_context_margin=self.margin,
            max_target_positions=448,
        )

    def use_context(self, mode: str, margin: int) -> None:
        """Decode at this audio context from now on (``--audio-context`` / ``--context-margin``)."""
        self.audio_context, self.margin = mode, margin
        if self._model is not None and self._flash != (mode == "full"):
            self._load()

    def audio_ctx(self, n_samples: int) -> int:
        """whisper.cpp's ``audio_ctx`` for a clip: 0 (full) or its positions + margin, at most the model's."""
        if self.audio_context == "full":
            return 0
        return min(clip_positions(n_samples) + self.margin, self.n_audio_ctx)

    def transcribe(self, audios: list[np.ndarray]) -> list[str]:
        """One text per 16-kHz float32 mono clip, in order (each clip is decoded on its own, batch 1)."""
        if self._model is None:
            raise GeodistillError(f"{self.model_file}: this whisper.cpp engine was closed")
        texts = []
        for i, clip in enumerate(audios):
            audio = np.asarray(clip, dtype=np.float32)
            if audio.ndim != 1:
                raise GeodistillError(f"clip {i}: expected mono samples (1-D), got shape {audio.shape}")
            ctx = self.audio_ctx(audio.size)
            if audio.size < MIN_SAMPLES:
                audio = np.pad(audio, (0, MIN_SAMPLES - audio.size))
            with quiet_stderr():
                segments = self._model.transcribe(np.ascontiguousarray(audio), audio_ctx=ctx)
            texts.append(" ".join(s.text.strip() for s in segments if s.text.strip()))
        return texts

    def close(self) -> None:
        """Free whisper.cpp's context now (dropping the object does it too)."""
        model, self._model = self._model, None
        if model is not None:
            with quiet_stderr():
                del model

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def __enter__(self) -> WhisperCppModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_open_models() -> None:
    """Free every open whisper.cpp context before the interpreter shuts down: pywhispercpp's own finaliser
    fails then (its module is gone), printing a traceback per model."""
    for model in list(_OPEN):
        model.close()
