"""How audio becomes text: one set of options shared by ``transcribe``, ``evaluate``, validation and the
engines. The CLI's decoding flags map 1:1 onto these fields (openai/whisper's ``DecodingOptions`` shape)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from geodistill.data.tokens import TASKS
from geodistill.errors import GeodistillError
from geodistill.models.context import check_override

DEFAULT_COMPUTE_TYPE = "int8"  # CPU int8: what faster-whisper users deploy (``--engine ct2``)
# --compute-type: CTranslate2's own names (ctranslate2.get_supported_compute_types says which a device has)
COMPUTE_TYPES = (
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
# --long-form: how clips over 30 s decode: the engine's sequential algorithm, or fixed 30-s windows decoded
# --batch-size at a time (geodistill.decoding.chunked)
LONG_FORM_MODES = ("sequential", "chunked")
# --dtype -> the torch dtype the weights are loaded in (--engine hf); "auto": fp16 on CUDA, fp32 elsewhere
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's check: AVX-512 BF16 / AMX); elsewhere torch would
    emulate it, slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype ``--dtype`` names on ``device`` (auto: fp16 on CUDA, fp32 elsewhere), refusing in one
    line a name it does not know and bf16 where the device lacks it."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise GeodistillError(f"--dtype: unknown '{dtype}' (choose auto, {', '.join(DTYPES)})")
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise GeodistillError(f"--dtype bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp16")
    if dtype == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise GeodistillError("--dtype bf16: this CPU has no native bf16 (AVX-512 BF16 / AMX); use fp32")
    return DTYPES[dtype]


@dataclass(frozen=True)
class DecodeOptions:
    language: str | None = None  # e.g. "en"; None: the model's default (English-only) or detected per clip
    task: str | None = None  # TASKS: "transcribe" | "translate" (into English); None = transcribe
    beam_size: int = 1  # 1 = greedy
    batch_size: int = 8  # clips decoded together (longest first, so a batch pads little)
    max_new_tokens: int | None = None  # per 30-s window; None = half the decoder context (224)
    audio_context: str | None = None  # "full" | "dynamic"; None = the model's stored context
    context_margin: int | None = None  # encoder positions after the clip (dynamic); None = stored
    engine: str = "hf"  # "hf" | "ct2" | "onnx" (see geodistill.decoding.engines)
    dtype: str = "auto"  # weights' dtype for engine hf: auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    compute_type: str | None = (
        None  # engine ct2 / whispercpp: a COMPUTE_TYPES name; None: DEFAULT_COMPUTE_TYPE
    )
    assistant: str | None = None  # a student spec drafting for the model (speculative decoding, hf)
    long_form: bool = False  # decode clips over 30 s (else they are refused or skipped)
    long_form_mode: str = "sequential"  # how: LONG_FORM_MODES ("chunked": batch_size windows at a time)
    fallback: bool | None = False  # temperature fallback; None = the model's own safeguard (on for Whisper)
    warmup: bool = False  # decode the first batch once, untimed, before timing starts
    vad: bool = False  # decode only the speech silero-vad finds (ct2: faster-whisper's vad_filter)
    word_timestamps: bool = False  # word start/end times in timed transcripts (transcribe's json, ...)
    timestamps: bool = False  # hypotheses keep Whisper's <|t.tt|> tokens (short clips, HF engine)
    ctc_beam: int = 1  # CTC students: prefix beam search with this many hypotheses; 1 = greedy best path
    lm: str | None = None  # CTC students, with ctc_beam > 1: a word n-gram LM (ARPA file) in the beam search
    lm_alpha: float = 0.5  # the LM's weight (natural-log LM score x alpha)
    lm_beta: float = 1.0  # the bonus per word (offsets the LM's per-word cost)

    def __post_init__(self) -> None:
        if self.beam_size < 1 or self.batch_size < 1 or self.ctc_beam < 1:
            raise ValueError(
                f"beam_size, batch_size and ctc_beam must be >= 1, got {self.beam_size}, {self.batch_size} "
                f"and {self.ctc_beam}"
            )
        check_override(self.audio_context, self.context_margin)
        if self.task is not None and self.task not in TASKS:
            raise GeodistillError(f"--task: unknown '{self.task}' (choose {' or '.join(TASKS)})")
        if self.long_form_mode not in LONG_FORM_MODES:
            raise GeodistillError(
                f"--long-form: unknown '{self.long_form_mode}' (choose {' or '.join(LONG_FORM_MODES)})"
            )
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise GeodistillError(f"--dtype: unknown '{self.dtype}' (choose auto, {', '.join(DTYPES)})")
        if self.compute_type is not None and self.compute_type not in COMPUTE_TYPES:
            raise GeodistillError(
                f"--compute-type: unknown '{self.compute_type}' (CTranslate2's: {', '.join(COMPUTE_TYPES)})"
            )
