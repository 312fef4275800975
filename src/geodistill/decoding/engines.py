"""Decoding engines behind ``transcribe`` / ``evaluate --engine``: Hugging Face (default), CTranslate2
(``ct2``), whisper.cpp (``whispercpp``, ``geodistill.decoding.whispercpp``) and ONNX Runtime (``onnx``,
``geodistill.decoding.onnx``); their conversions are cached by ``geodistill.decoding.converted``.

``Ct2Whisper`` wraps ``ctranslate2.models.Whisper`` in the slice of the HF model interface geodistill's
decoding uses (``generate(features, num_beams=, max_new_tokens=, language=, task=)``, ``config``,
``generation_config``, ``device``, ``eval()``), so ``evaluate`` times and scores both engines with the same
code. Any model spec works: a CTranslate2 folder made by ``geodistill export --format ct2`` is used as it
is; anything else is converted once (CTranslate2's own converter) into ``<cache>/ct2/`` and reused.
CTranslate2 accepts fewer than 3000 feature frames, so a short-context student keeps its short input.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

from geodistill.decoding.assistant import AssistedWhisper, with_assistant
from geodistill.decoding.converted import ct2_folder, ggml_folder, onnx_folder
from geodistill.decoding.onnx import OnnxWhisper, load_processor, onnx_fields
from geodistill.decoding.options import COMPUTE_TYPES, DEFAULT_COMPUTE_TYPE, DecodeOptions, resolve_dtype
from geodistill.decoding.runtime import OutsideTorch
from geodistill.decoding.whispercpp import WhisperCppModel
from geodistill.errors import GeodistillError, ModelLoadError
from geodistill.models import load_whisper, resolve_device
from geodistill.models.context import DEFAULT_MARGIN
from geodistill.models.ct2 import read_ct2
from geodistill.models.ct2_convert import read_context_rule
from geodistill.models.ggml import GGML_FILE
from geodistill.models.ggml_read import read_ggml
from geodistill.models.loading import (
    load_reason,
)
from geodistill.optional import require

ENGINES = ("hf", "ct2", "whispercpp", "onnx")
# --compute-type -> the whisper.cpp weights type: int8 kinds -> q8_0, the rest -> f16 (f32 files abort
# whisper.cpp's CPU convolution; int16 has no ggml type, f16 is the nearest that loses no more)
GGML_TYPES = {name: "q8_0" if name.startswith("int8") else "f16" for name in COMPUTE_TYPES}
GGML_TYPES.update(default="q8_0", auto="q8_0")
# CTranslate2 converts with a quantization; "default" / "auto" pick the compute type at load, from fp32
CT2_CONVERT = {name: name for name in COMPUTE_TYPES} | {"default": "float32", "auto": "float32"}

ENGLISH_ONLY_VOCAB = 51864

log = logging.getLogger("geodistill")


def _processor(folder: Path):
    """WhisperProcessor of a CT2 folder: its tokenizer.json and preprocessor_config.json (80 mels if none)."""

    try:
        if (folder / "preprocessor_config.json").is_file():
            extractor = WhisperFeatureExtractor.from_pretrained(folder)
        else:
            extractor = WhisperFeatureExtractor(feature_size=80)
        tokenizer = WhisperTokenizerFast(
            tokenizer_file=str(folder / "tokenizer.json"), pad_token="<|endoftext|>"
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: unusable tokenizer.json / preprocessor_config.json ({exc})") from exc
    return WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer)


def _vocab_size(folder: Path) -> int:
    """Output vocabulary size of a CT2 folder (vocabulary.json list, else vocabulary.txt lines)."""
    if (folder / "vocabulary.json").is_file():
        return len(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8")))
    return len((folder / "vocabulary.txt").read_text(encoding="utf-8").splitlines())


class Ct2Whisper(OutsideTorch):
    """``ctranslate2.models.Whisper`` behind the HF-generate slice geodistill decodes with (module doc)."""

    def __init__(
        self, folder: Path, processor, device: str = "cpu", compute_type: str = DEFAULT_COMPUTE_TYPE
    ):
        ctranslate2 = require("ctranslate2", "deploy", "--engine ct2")
        threads = torch.get_num_threads()
        self.folder, self.compute_type, self.processor = folder, compute_type, processor
        try:
            self.model = ctranslate2.models.Whisper(
                str(folder), device=device, compute_type=compute_type, intra_threads=threads
            )
        except (RuntimeError, ValueError, OSError) as exc:  # a damaged model.bin / config.json / vocabulary
            raise ModelLoadError(f"{folder}: not a loadable CTranslate2 model ({load_reason(exc)})") from exc
        self.ct2_device = device
        self.config = SimpleNamespace(max_target_positions=448, vocab_size=_vocab_size(folder))
        self.config.__dict__.update(read_context_rule(folder))  # a dynamic-context student keeps its rule
        self.generation_config = SimpleNamespace(is_multilingual=self.model.is_multilingual)

    def faster_whisper(self):
        """faster-whisper's WhisperModel on the same folder (long audio, temperature fallback), made once."""
        if getattr(self, "_faster", None) is None:
            fw = require("faster_whisper", "deploy", "long audio or temperature fallback with --engine ct2")
            threads = torch.get_num_threads()
            self._faster = fw.WhisperModel(
                str(self.folder), device=self.ct2_device, compute_type=self.compute_type, cpu_threads=threads
            )
        return self._faster

    @property
    def timestamp_begin(self) -> int:
        return self.processor.tokenizer.convert_tokens_to_ids("<|0.00|>")

    def _prompt(
        self, language: str | None, task: str | None, features, timestamps: bool = False
    ) -> list[list[str]]:
        """Per-item prompt: <|sot|> [<|lang|> <|task|>] <|notimestamps|> (language detected if None); without
        <|notimestamps|> when ``timestamps`` (CTranslate2 then applies Whisper's timestamp rules)."""
        n = features.shape[0]
        last = [] if timestamps else ["<|notimestamps|>"]
        if not self.model.is_multilingual:
            return [["<|startoftranscript|>", *last]] * n
        if language:
            langs = [f"<|{language}|>"] * n
        else:
            langs = [result[0][0] for result in self.model.detect_language(features)]
        return [["<|startoftranscript|>", lang, f"<|{task or 'transcribe'}|>", *last] for lang in langs]

    def generate(
        self,
        input_features: torch.Tensor,
        num_beams: int = 1,
        max_new_tokens: int = 224,
        language: str | None = None,
        task: str | None = None,
        do_sample: bool = False,
        use_cache: bool = True,
        no_speech: list[float | None] | None = None,
        temperature: float = 0.0,
        logprobs: list[float] | None = None,
        return_timestamps: bool = False,
        **unsupported,
    ) -> torch.LongTensor:
        """Token ids (B, T) of ``input_features`` (B, n_mels, frames <= 3000), prompt excluded, padded with
        <|endoftext|>. Raises GeodistillError for HF-only options (assistant models).
        ``return_timestamps``: Whisper's <|t.tt|> tokens among the text, as transformers' ``generate`` gives.
        ``no_speech``: a list, extended with each clip's no-speech probability (CTranslate2's own).
        ``temperature`` above 0 samples from the whole distribution (one hypothesis; CTranslate2's random
        generator lives in its worker threads, so samples differ from call to call); ``logprobs``: a list,
        extended with each clip's mean log-probability (faster-whisper's formula, the end token counted)."""
        if unsupported:
            raise GeodistillError(f"--engine ct2 does not support {', '.join(sorted(unsupported))}")
        import ctranslate2  # noqa: PLC0415 (optional extra [deploy])

        feats = ctranslate2.StorageView.from_array(input_features.float().contiguous().numpy())
        prompts = self._prompt(language, task, feats, return_timestamps)
        # Measured with CTranslate2 4.8: Whisper stops after floor(max_length / 2) new tokens, not
        # max_length - len(prompt); ask for enough and cut at max_new_tokens, as HF's generate does.
        sampling = {"sampling_temperature": temperature, "sampling_topk": 0} if temperature > 0 else {}
        results = self.model.generate(
            feats,
            prompts,
            beam_size=1 if temperature > 0 else num_beams,
            max_length=2 * max_new_tokens + len(prompts[0]),
            suppress_blank=True,
            return_no_speech_prob=no_speech is not None,
            return_scores=logprobs is not None,
            **sampling,
        )
        if no_speech is not None:
            no_speech.extend(float(r.no_speech_prob) for r in results)
        seqs = [r.sequences_ids[0][:max_new_tokens] for r in results]
        if logprobs is not None:  # scores are length-normalised sums (CTranslate2's length_penalty 1)
            logprobs.extend(r.scores[0] * len(s) / (len(s) + 1) for r, s in zip(results, seqs, strict=True))
        eot = self.processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        width = max((len(s) for s in seqs), default=0)
        return torch.tensor([s + [eot] * (width - len(s)) for s in seqs], dtype=torch.long).reshape(
            len(seqs), -1
        )

    def no_speech_probs(self, input_features: torch.Tensor) -> list[float | None]:
        """Each clip's no-speech probability (``geodistill.decoding.whisper.no_speech_probs``), by
        CTranslate2, which reads it at <|startoftranscript|>: one decoding step, language given (the
        decoder is causal, so the later prompt tokens do not change it)."""
        import ctranslate2  # noqa: PLC0415 (optional extra [deploy])

        feats = ctranslate2.StorageView.from_array(input_features.float().contiguous().numpy())
        prompt = ["<|startoftranscript|>", "<|notimestamps|>"]
        if self.model.is_multilingual:
            prompt[1:1] = ["<|en|>", "<|transcribe|>"]
        results = self.model.generate(
            feats,
            [prompt] * input_features.shape[0],
            beam_size=1,
            max_length=len(prompt) + 1,
            return_no_speech_prob=True,
        )
        return [float(r.no_speech_prob) for r in results]


def check_compute_type(compute_type: str, device: str) -> None:
    """Refuse in one line a compute type CTranslate2 cannot run on ``device`` ("cpu" | "cuda")."""
    ctranslate2 = require("ctranslate2", "deploy", "--engine ct2")
    if compute_type in ("default", "auto"):
        return
    supported = sorted(ctranslate2.get_supported_compute_types(device))
    if compute_type not in supported:
        raise GeodistillError(
            f"--compute-type {compute_type}: CTranslate2 {ctranslate2.__version__} does not support it on "
            f"{device} (supported there: {', '.join(supported)})"
        )


def _assisted(spec, device: str, assistant: str, dtype: str = "auto"):
    """(model, processor, device): the Whisper ``spec`` (or a loaded pair) drafting with ``assistant``."""

    if isinstance(spec, tuple | list):
        teacher, processor = spec
    else:
        dev = resolve_device(device)
        teacher, processor = load_whisper(str(spec), device=str(dev), dtype=resolve_dtype(dtype, dev))
        teacher.eval()
    return with_assistant(teacher, processor, assistant), processor, teacher.device


def check_chunked(options: DecodeOptions) -> None:
    """Refuse in one line what ``--long-form chunked`` (``geodistill.decoding.chunked``) cannot do: engines
    other than hf and ct2, ``--assistant``, ``--vad`` (which already batches long audio: its speech chunks),
    word times (the merge of overlapping windows gives segment times) and the temperature fallback asked for
    on ct2 (its windows decode at one temperature)."""
    o = options
    if o.long_form_mode != "chunked":
        return
    flag = "--long-form chunked"
    if o.vad:
        raise GeodistillError(
            f"{flag}: --vad already decodes long audio in batches (its speech chunks, --batch-size at a "
            "time); use one or the other"
        )
    if o.assistant is not None:
        raise GeodistillError(
            f"{flag}: --assistant decodes one utterance at a time; use --long-form sequential"
        )
    if o.engine not in ("hf", "ct2"):
        raise GeodistillError(
            f"{flag}: --engine {o.engine} has no batched windows; use --engine hf or ct2, or --vad (which "
            "batches speech chunks on every engine)"
        )
    if o.word_timestamps:
        raise GeodistillError(
            f"--word-timestamps: {flag} gives segment times only (merged from overlapping windows); use "
            "--long-form sequential"
        )
    if o.fallback is True and o.engine == "ct2":
        raise GeodistillError(
            f"--fallback: {flag} on --engine ct2 decodes each window at one temperature; drop --fallback, "
            "or use --engine hf or --long-form sequential"
        )


def check_engine(options: DecodeOptions) -> DecodeOptions:
    """The options as the engine applies them, refusing in one line what it cannot do.

    ``onnx`` decodes one 30-s window per clip, greedily, with the temperature fallback where asked (the
    model's own safeguard included): beam search is refused, and clips over 30 s are refused as for a
    model without long-form decoding (``long_form`` off) unless ``vad`` cuts them into 30-s chunks.
    ``onnx``, ``whispercpp`` and an assistant give no token timestamps: ``word_timestamps`` is refused.
    ``whispercpp`` runs English transcription only: ``task`` translate is refused.
    """
    check_chunked(options)
    if options.ctc_beam != 1 or options.lm is not None:
        flag = f"--ctc-beam {options.ctc_beam}" if options.ctc_beam != 1 else f"--lm {options.lm}"
        raise GeodistillError(f"{flag}: for CTC students only; a Whisper model decodes with --beam-size")
    if options.word_timestamps and (options.engine in ("onnx", "whispercpp") or options.assistant):
        what = f"--engine {options.engine}" if options.assistant is None else "--assistant"
        raise GeodistillError(
            f"--word-timestamps: {what} gives no token timestamps; use --engine hf (a model with alignment "
            "heads) or --engine ct2"
        )
    if options.task == "translate" and options.engine == "whispercpp":
        raise GeodistillError(
            "--task translate: --engine whispercpp decodes English transcription only; use --engine hf, ct2 "
            "or onnx"
        )
    if options.dtype != "auto" and options.engine != "hf":
        hint = "--compute-type" if options.engine in ("ct2", "whispercpp") else "nothing: it runs fp32"
        raise GeodistillError(
            f"--dtype {options.dtype}: applies to --engine hf; --engine {options.engine} takes {hint}"
        )
    if options.compute_type is not None and options.engine not in ("ct2", "whispercpp"):
        raise GeodistillError(
            f"--compute-type {options.compute_type}: applies to --engine ct2 / whispercpp; "
            f"--engine {options.engine} takes --dtype"
            if options.engine == "hf"
            else f"--compute-type {options.compute_type}: --engine onnx runs fp32 only"
        )
    if options.engine != "onnx":
        return options
    if options.beam_size != 1:
        raise GeodistillError(
            f"--beam-size {options.beam_size}: --engine onnx decodes greedily; use --beam-size 1 "
            "(or --engine hf / ct2 for beam search)"
        )
    return replace(options, long_form=options.vad and options.long_form)


def engine_fields(model) -> dict:
    """eval.json fields naming the engine; a CT2 model's parameters and size are read off model.bin."""

    if isinstance(model, AssistedWhisper):
        return {"engine": "hf", **model.fields()}
    if isinstance(model, OnnxWhisper):
        return onnx_fields(model)
    if isinstance(model, WhisperCppModel):
        header = read_ggml(model.model_file, load_tensors=False)
        return {
            "engine": "whispercpp",
            "params": sum(int(math.prod(shape)) for shape in header.shapes.values()),
            "disk_mb": model.model_file.stat().st_size / 2**20,
            "dtype": header.dtype,
            "device": f"cpu (whisper.cpp, {model.threads} threads)",
            "timing": "whisper.cpp's whole decode of each clip (log-Mel + encoder + decoder, batch 1); "
            "audio decoding excluded",
        }
    if not isinstance(model, Ct2Whisper):
        return {"engine": "hf"}

    variables, _ = read_ct2(model.folder / "model.bin")
    params = sum(t.numel() for name, t in variables.items() if t.numel() > 1 and not name.endswith("_scale"))
    return {
        "engine": "ct2",
        "params": params,
        "disk_mb": (model.folder / "model.bin").stat().st_size / 2**20,
        "dtype": model.compute_type,
        "device": f"{model.ct2_device} (ctranslate2)",
    }


def load_engine(
    spec,
    device: str = "auto",
    engine: str = "hf",
    compute_type: str | None = None,
    assistant: str | None = None,
    fallback: bool | None = None,
    dtype: str = "auto",
):
    """(model, processor, device) for ``engine`` ("ct2", "whispercpp"), or the HF ``spec`` drafting with
    ``assistant``. ``compute_type``: CTranslate2's name (None: int8), checked against what the device
    supports; whisper.cpp maps it to its weights type (``GGML_TYPES``). ``dtype``: the HF weights' (with
    ``assistant``). ``fallback``: whisper.cpp's own temperature fallback (None: on, its default)."""
    compute_type = compute_type or DEFAULT_COMPUTE_TYPE
    if engine not in ENGINES:
        raise GeodistillError(f"--engine: unknown engine '{engine}' (choose {' or '.join(ENGINES)})")
    if compute_type not in COMPUTE_TYPES:
        raise GeodistillError(
            f"--compute-type: unknown '{compute_type}' (CTranslate2's: {', '.join(COMPUTE_TYPES)})"
        )
    if assistant is not None:
        if engine != "hf":
            raise GeodistillError("--assistant needs --engine hf (assisted generation is transformers')")
        return _assisted(spec, device, assistant, dtype)
    if isinstance(spec, tuple | list):
        raise GeodistillError(
            f"--engine {engine} needs a model spec or folder, not a model already in memory"
        )
    if engine == "onnx":
        folder = onnx_folder(str(spec))
        onnx_model = OnnxWhisper(folder, load_processor(folder))
        return onnx_model, onnx_model.processor, torch.device("cpu")
    if engine == "whispercpp":
        folder = ggml_folder(str(spec), GGML_TYPES[compute_type])
        rule = read_context_rule(folder)
        mode = rule.get("geodistill_audio_context", "full")
        margin = int(rule.get("geodistill_context_margin", DEFAULT_MARGIN))
        threads = torch.get_num_threads()
        cpp = WhisperCppModel(folder / GGML_FILE, threads, mode, margin, fallback=fallback is not False)
        return cpp, _processor(folder), torch.device("cpu")

    ct2_device = "cuda" if resolve_device(device).type == "cuda" else "cpu"
    check_compute_type(compute_type, ct2_device)
    folder = ct2_folder(str(spec), CT2_CONVERT[compute_type])
    model = Ct2Whisper(folder, _processor(folder), ct2_device, compute_type)
    return model, model.processor, torch.device("cpu")
