"""How audio becomes text: one set of options shared by ``transcribe``, ``evaluate``, validation and the
engines. The CLI's decoding flags map 1:1 onto these fields (openai/whisper's ``DecodingOptions`` shape)."""

from __future__ import annotations

from dataclasses import dataclass

from geodistill.models.context import check_override

DEFAULT_COMPUTE_TYPE = "int8"  # CPU int8: what faster-whisper users deploy (``--engine ct2``)


@dataclass(frozen=True)
class DecodeOptions:
    language: str | None = None  # e.g. "en"; None: the model's default (English-only) or detected per clip
    beam_size: int = 1  # 1 = greedy
    batch_size: int = 8  # clips decoded together (longest first, so a batch pads little)
    max_new_tokens: int | None = None  # per 30-s window; None = half the decoder context (224)
    audio_context: str | None = None  # "full" | "dynamic"; None = the model's stored context
    context_margin: int | None = None  # encoder positions after the clip (dynamic); None = stored
    engine: str = "hf"  # "hf" | "ct2" | "onnx" (see geodistill.decoding.engines)
    compute_type: str = DEFAULT_COMPUTE_TYPE  # CTranslate2's weights type (engine ct2)
    assistant: str | None = None  # a student spec drafting for the model (speculative decoding, hf)
    long_form: bool = False  # decode clips over 30 s with the engine's sequential long-form algorithm
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
