"""CTC students in ``evaluate``, ``transcribe`` and validation: greedy or beam decoding, each clip at its own
length.

A CTC student (``geodistill.students.ctc.model``) has no decoder: one forward over the log-Mel features
gives a distribution over its units (characters or BPE pieces) per 20-ms frame (60 ms at downsample 3), and
the transcript is its best path (``ctc_greedy``: argmax per frame, repeats collapsed, blanks dropped), or with
``ctc_beam`` N > 1 (``--ctc-beam N``) a prefix beam search, optionally with a word n-gram LM (``--lm
lm.arpa``, ``--lm-alpha``, ``--lm-beta``: ``geodistill.students.ctc.beam``). The compute time (RTF) covers
the search. A batch's features are padded to its
longest clip only (no 30-s window): each clip's frames beyond its own length are masked as attention keys
and not decoded, so a clip's transcript does not depend on its batch.

Whisper's decoding options do not apply and are refused with one line each (``check_options``): the
CTranslate2 engine, an assistant, beams, the temperature fallback, the audio context, a token cap. The
model's 1500 positions cover 30 s and there is no long-form decoding: ``transcribe`` refuses a longer file
and ``evaluate`` skips a longer clip into bad_samples.jsonl.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch

from geodistill.data import BadSamples, Utterance
from geodistill.decoding.batches import Decoded, decode_batches
from geodistill.decoding.options import DecodeOptions, resolve_dtype
from geodistill.decoding.segments import Transcript, whole
from geodistill.decoding.speed import Timer
from geodistill.decoding.whisper import SAMPLE_RATE
from geodistill.errors import GeodistillError
from geodistill.models.context import CONV_STRIDE, HOP
from geodistill.students.ctc.beam import Scorer, beam_search
from geodistill.students.ctc.lm import load_lm
from geodistill.students.ctc.model import MAX_POSITIONS, CTCModel, clip_positions, ctc_greedy, load_ctc
from geodistill.students.family import Texts, Timed

WINDOW = f"the CTC student's 30 s ({MAX_POSITIONS} positions; it has no long-form decoding)"
TIMING = (
    "CTC forward + greedy best path, device-synchronised; audio decoding and log-Mel extraction "
    "excluded (feature_seconds)"
)
DECODING = "greedy CTC best path (argmax per frame, repeats collapsed, blanks dropped)"
BEAM_TIMING = (
    "CTC forward + prefix beam search (and its LM), device-synchronised; audio decoding, log-Mel extraction "
    "and reading the LM excluded"
)
EDGE_FRAMES = 2  # >= half the STFT window (200 samples) in 10-ms frames: the last kept frame sees zeros
AUDIO_CONTEXT = "clip"  # eval.json's audio_context of a CTC student: each clip at its own length
NO_TOKENS = "n/a (a CTC student emits characters, not tokens)"
NO_TOKEN_CAP = "0, not applicable: a CTC student emits one label per frame, there is no token cap"


def check_options(
    engine: str = "hf",
    assistant: str | None = None,
    beam_size: int = 1,
    fallback: bool | None = False,
    audio_context: str | None = None,
    context_margin: int | None = None,
    max_new_tokens: int | None = None,
) -> None:
    """Raise a one-line GeodistillError naming the first Whisper decoding option given for a CTC student."""
    refusals = (
        (
            engine != "hf",
            f"--engine {engine}: a CTC student runs in PyTorch only (CTranslate2 has no "
            "CTC model); use --engine hf",
        ),
        (
            assistant is not None,
            "--assistant: speculative decoding drafts decoder tokens, and a CTC student has no decoder",
        ),
        (
            beam_size != 1,
            f"--beam-size {beam_size}: Whisper's beam search; a CTC student's is --ctc-beam N "
            "(use --beam-size 1)",
        ),
        (
            bool(fallback),
            "--fallback: the temperature fallback re-samples a decoder, and a CTC student has "
            "none (it decodes its best path)",
        ),
        (
            audio_context is not None,
            f"--audio-context {audio_context}: a CTC student always runs over each clip's own length",
        ),
        (
            context_margin is not None,
            f"--context-margin {context_margin}: a CTC student always runs over "
            "each clip's own length (no margin)",
        ),
        (
            max_new_tokens is not None,
            f"max_new_tokens {max_new_tokens}: a CTC student emits one label "
            "per frame; there is no token cap",
        ),
    )
    for refused, message in refusals:
        if refused:
            raise GeodistillError(message)


def clip_features(processor, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-Mel features (B, n_mels, F), positions (B,)) of 16-kHz clips; F: 2 x the longest one's positions.

    Each clip's features equal the first F frames of its 30-s features, what training cut them to (a clip
    within 12.5 ms of 30 s aside): the extractor pads with zeros, whose log-Mel lies below any clip's
    maximum, and is asked for EDGE_FRAMES more frames than kept, so the STFT's reflection at the end of the
    padded audio reaches no kept frame.
    """
    positions = torch.tensor([clip_positions(len(a)) for a in audios])
    frames = CONV_STRIDE * int(positions.max())
    feats = processor.feature_extractor(
        list(audios), sampling_rate=SAMPLE_RATE, max_length=(frames + EDGE_FRAMES) * HOP, return_tensors="pt"
    ).input_features
    return feats[..., :frames], positions


Decoder = Callable[[torch.Tensor, torch.Tensor], list[str]]  # (log-probs (B, T, V), lengths (B,)) -> texts


def decoder(model: CTCModel, options: DecodeOptions | None = None) -> Decoder:
    """How ``options`` turn ``model``'s frames into text: greedy (``ctc_beam`` 1), else prefix beam search
    with the LM ``options.lm`` (read and checked against the model's units here, once)."""
    vocab = model.shape.vocab
    if options is None or options.ctc_beam == 1:
        return lambda log_probs, lengths: ctc_greedy(log_probs, lengths, vocab)
    lm = load_lm(options.lm, vocab) if options.lm else None
    scorer = Scorer(lm, options.lm_alpha, options.lm_beta) if lm else Scorer(None, 0.0, 0.0)
    beam = options.ctc_beam

    def search(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        frames = log_probs.float().cpu().numpy()
        return [beam_search(frames[b, : int(n)], vocab, beam, scorer) for b, n in enumerate(lengths.tolist())]

    return search


@torch.no_grad()
def transcribe_clips(
    model: CTCModel,
    processor,
    audios: Sequence[np.ndarray],
    feature: Timer | None = None,
    compute: Timer | None = None,
    decode_fn: Decoder | None = None,
) -> list[str]:
    """Transcripts of 16-kHz clips (each up to 30 s), greedy unless ``decode_fn`` (``decoder``) says
    otherwise; ``feature`` / ``compute`` time the two parts."""
    decode_fn = decode_fn or decoder(model)
    with feature or contextlib.nullcontext():
        feats, positions = clip_features(processor, audios)
    with compute or contextlib.nullcontext():
        log_probs, _, lengths = model(feats.to(model.device, model.dtype), positions)
        return decode_fn(log_probs, lengths)


def decode_ctc(
    model: CTCModel,
    processor,
    utts: Sequence[Utterance],
    bad: BadSamples,
    batch_size: int = 8,
    warmup: bool = False,
    decode_fn: Decoder | None = None,
) -> Decoded:
    """Transcripts of ``utts`` (``decode_batches``: longest first, bad and over-30-s clips skipped into
    ``bad``, input order out), greedy unless ``decode_fn``; ``warmup`` decodes the first batch once, untimed,
    before timing."""
    decode_fn = decode_fn or decoder(model)

    def texts(audios: list[np.ndarray], names: list[str], out: Decoded) -> list[str]:
        return transcribe_clips(model, processor, audios, out.feature, out.compute, decode_fn)

    def warm(audios: list[np.ndarray]) -> None:
        transcribe_clips(model, processor, audios, decode_fn=decode_fn)

    out = Decoded(compute=Timer(model.device), feature=Timer(), n_tokens=None)
    decode_batches(model, utts, bad, batch_size, texts, out, window=WINDOW, warm=warm if warmup else None)
    out.stats = {"long_clips": 0, "hit_token_cap": 0}
    return out


def check(options: DecodeOptions) -> DecodeOptions:
    """The options as a CTC student applies them (no long-form decoding); Whisper's are refused."""
    o = options
    if o.lm is not None and o.ctc_beam == 1:
        raise GeodistillError(f"--lm {o.lm}: the LM scores beam hypotheses; add --ctc-beam N (e.g. 16)")
    check_options(
        o.engine, o.assistant, o.beam_size, o.fallback, o.audio_context, o.context_margin, o.max_new_tokens
    )
    if o.task == "translate":
        raise GeodistillError(
            "--task translate: a CTC student only transcribes (it has no decoder prompt to ask for a task)"
        )
    if o.word_timestamps:
        raise GeodistillError(
            "--word-timestamps: a CTC student has no decoder cross-attention to align words with"
        )
    if o.vad:
        raise GeodistillError(
            "--vad: not implemented for a CTC student (it decodes each clip whole, up to 30 s)"
        )
    if o.long_form_mode != "sequential":
        raise GeodistillError(
            f"--long-form {o.long_form_mode}: a CTC student decodes each clip whole, up to 30 s"
        )
    if o.compute_type is not None:
        raise GeodistillError(
            f"--compute-type {o.compute_type}: a CTC student runs in PyTorch only; use --dtype"
        )
    return replace(o, long_form=False)


def load(spec, device: str, options: DecodeOptions) -> tuple:
    """(model, processor, device): a saved CTC student (its folder, run folder or export) or a loaded pair."""
    if isinstance(spec, tuple | list):
        model, processor = spec
        return model, processor, model.device
    model, processor = load_ctc(spec, device=str(device))
    model = model.to(resolve_dtype(options.dtype, model.device))  # auto: fp16 on CUDA, fp32 on the CPU
    return model, processor, model.device


def texts(model: CTCModel, processor, options: DecodeOptions) -> Texts:
    """(audios, names) -> transcripts, greedy or by beam search (``options.ctc_beam``, ``options.lm``)."""
    decode_fn = decoder(model, options)
    return lambda audios, names: transcribe_clips(model, processor, audios, decode_fn=decode_fn)


def transcripts(model: CTCModel, processor, options: DecodeOptions, name: str = "the model") -> Timed:
    """(audios, names) -> one segment spanning each clip (its transcript, as ``texts``): the path is not
    turned into times here."""
    decode_fn = decoder(model, options)

    def run(audios: list[np.ndarray], names: Sequence) -> list[Transcript]:
        found = transcribe_clips(model, processor, audios, decode_fn=decode_fn)
        return [whole(t, a.size / SAMPLE_RATE, None) for t, a in zip(found, audios, strict=True)]

    return run


def decode(
    model: CTCModel, processor, utts: Sequence[Utterance], bad: BadSamples, options: DecodeOptions
) -> tuple[Decoded, dict, str]:
    """(decoded, eval.json decoding fields, what compute time covers) of ``utts``."""
    decode_fn = decoder(model, options)
    decoded = decode_ctc(model, processor, utts, bad, options.batch_size, options.warmup, decode_fn)
    return decoded, eval_fields(options), TIMING if options.ctc_beam == 1 else BEAM_TIMING


def describe(result: dict) -> dict[str, str]:
    """eval.md's decoding, audio-context and tokens/s rows of a CTC student's eval.json dict."""
    r = result
    return {
        "tokens / s": NO_TOKENS,
        "decoding": f"{r['decoding']}, batch {r['batch_size']}; hit_token_cap: {r['hit_token_cap_note']}",
        "audio context": "each clip at its own length (no 30-s padding)",
    }


def eval_fields(options: DecodeOptions | None = None) -> dict:
    """eval.json fields of a CTC decoding, in place of Whisper's beam, token cap, context and engine:
    greedy, or the beam search with its LM file and weights."""
    o = options or DecodeOptions()
    beam = o.ctc_beam > 1
    how = DECODING
    if beam:
        lm = f"word LM {o.lm} (alpha {o.lm_alpha:g}, beta {o.lm_beta:g})" if o.lm else "no LM"
        how = f"CTC prefix beam search, {o.ctc_beam} hypotheses, {lm}"
    return {
        "decoding": how,
        "ctc_beam": o.ctc_beam,
        "lm": o.lm if beam else None,
        "lm_alpha": o.lm_alpha if beam and o.lm else None,
        "lm_beta": o.lm_beta if beam and o.lm else None,
        "beam_size": 1,
        "max_new_tokens": None,
        "hit_token_cap_note": NO_TOKEN_CAP,
        "audio_context": AUDIO_CONTEXT,
        "context_margin": None,
        "engine": "torch",
        "long_form": False,
        "temperature_fallback": False,
    }
