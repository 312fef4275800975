"""``--engine onnx``: an ONNX export (``geodistill.models.onnx``) run by ONNX Runtime on the CPU.

``OnnxWhisper`` puts the three graphs (encoder, first decoder step, decoder step with the KV cache) behind
the slice of the HF model interface geodistill's decoding uses, as ``Ct2Whisper`` does for CTranslate2:
``generate(features, num_beams=1, max_new_tokens=, language=, task=)`` -> token ids (B, T) without the
prompt, padded with <|endoftext|>; ``config``, ``generation_config``, ``device``, ``dtype``, ``eval()``.

Decoding is greedy, as transformers' Whisper ``generate`` does it: the prompt <|startoftranscript|>
[<|lang|> <|task|>] <|notimestamps|> (the language detected per clip from the first step when a
multilingual model is given none), ``suppress_tokens`` at every step and ``begin_suppress_tokens`` at the
first, stopping at <|endoftext|>. The encoder takes any even frame count, so a dynamic-context student's
short features run as they are. At a temperature above 0 it samples instead, for the temperature fallback
(``geodistill.decoding.fallback``). Beam search is not implemented here (``check_engine`` refuses it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import GenerationConfig, WhisperConfig, WhisperProcessor
from transformers.models.whisper.tokenization_whisper import LANGUAGES, TO_LANGUAGE_CODE

from geodistill.decoding.fallback import SEED
from geodistill.decoding.runtime import OutsideTorch
from geodistill.errors import GeodistillError, ModelLoadError
from geodistill.models.ct2_convert import read_context_rule
from geodistill.models.onnx import DECODER, DECODER_WITH_PAST, ENCODER, GRAPHS, kv_names
from geodistill.optional import require

PURPOSE = "--engine onnx"


def _session(path: Path, threads: int, arena: bool):
    """An ONNX Runtime CPU session of one graph; a missing or corrupt file is a one-line ModelLoadError.

    ``arena``: keep freed blocks for the next call (ONNX Runtime's CPU arena). Right for the encoder (run one
    clip at a time, so a few shapes: without it each call page-faults its attention matrices afresh); wrong
    for the decoder steps, whose cache length changes every call (the arena would keep every size).
    """
    ort = require("onnxruntime", "onnx", PURPOSE)
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing (an ONNX export holds {', '.join(GRAPHS)})")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    options.enable_mem_pattern = False  # shapes change from call to call
    options.log_severity_level = 3  # errors only: the exporter's unused-initializer notices are noise
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own pybind types (InvalidProtobuf, Fail, ...)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"{path}: not a loadable ONNX graph ({first[:300]})") from exc


def load_processor(folder: Path) -> WhisperProcessor:
    """The WhisperProcessor saved next to the graphs (one-line ModelLoadError when unusable)."""
    try:
        return WhisperProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{folder}: unusable processor files ({exc})") from exc


class OnnxWhisper(OutsideTorch):
    """An ONNX Whisper export behind the HF-generate slice geodistill decodes with (module doc)."""

    def __init__(self, folder: Path, processor: WhisperProcessor):
        threads = torch.get_num_threads()
        self.folder, self.processor = folder, processor
        try:
            self.config = WhisperConfig.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise ModelLoadError(f"{folder / 'config.json'}: unusable Whisper config ({exc})") from exc
        for key, value in read_context_rule(folder).items():  # a dynamic-context student keeps its rule
            setattr(self.config, key, value)
        if (folder / "generation_config.json").is_file():
            self.generation_config = GenerationConfig.from_pretrained(folder, local_files_only=True)
        else:
            self.generation_config = GenerationConfig.from_model_config(self.config)
        self.encoder = _session(folder / ENCODER, threads, arena=True)
        self.decoder = _session(folder / DECODER, threads, arena=False)
        self.decoder_with_past = _session(folder / DECODER_WITH_PAST, threads, arena=False)
        n = self.config.decoder_layers
        self.past_names = kv_names(n, "past_key_values", "decoder")
        self.cross_names = kv_names(n, "past_key_values", "encoder")

    def encode(self, feats: np.ndarray) -> np.ndarray:
        """Encoder states (B, frames / 2, d_model), one clip at a time: the exported attention holds a
        (heads, positions, positions) matrix per clip, so a batch would multiply that memory by B for no
        speed-up on a CPU."""
        rows = [self.encoder.run(None, {"input_features": feats[i : i + 1]})[0] for i in range(len(feats))]
        return np.concatenate(rows, axis=0)

    def _token(self, token: str) -> int:
        return int(self.processor.tokenizer.convert_tokens_to_ids(token))

    def _eot(self) -> int:
        eos = self.generation_config.eos_token_id
        if eos is None:
            return self._token("<|endoftext|>")
        return int(eos[0] if isinstance(eos, list | tuple) else eos)

    def _language_id(self, language: str) -> int:
        """Token id of ``language`` ("en", "english" or "<|en|>")."""
        code = language.strip("<|>").lower()
        code = TO_LANGUAGE_CODE.get(code, code)
        lang_to_id = getattr(self.generation_config, "lang_to_id", None) or {}
        token = f"<|{code}|>"
        if code not in LANGUAGES or (lang_to_id and token not in lang_to_id):
            raise GeodistillError(f"--language {language}: not a language this Whisper model knows")
        return int(lang_to_id.get(token, self._token(token)))

    def _task_id(self, task: str | None) -> int:
        task = task or "transcribe"
        task_to_id = getattr(self.generation_config, "task_to_id", None) or {}
        return int(task_to_id.get(task, self._token(f"<|{task}|>")))

    def _no_timestamps(self) -> int:
        found = getattr(self.generation_config, "no_timestamps_token_id", None)
        return int(found) if found is not None else self._token("<|notimestamps|>")

    def _start(self, hidden: np.ndarray, language: str | None, task: str | None):
        """(prompt length, last logits (B, V), self K/V, cross K/V) after running the Whisper prompt."""
        batch = hidden.shape[0]
        sot = self.generation_config.decoder_start_token_id
        sot = self._token("<|startoftranscript|>") if sot is None else int(sot)
        multilingual = getattr(self.generation_config, "is_multilingual", None)
        if multilingual is None:
            multilingual = self.config.vocab_size > 51864
        if not multilingual:
            prompt = np.array([[sot, self._no_timestamps()]] * batch, dtype=np.int64)
            return (prompt.shape[1], *self._first(prompt, hidden))
        tail = [self._task_id(task), self._no_timestamps()]
        if language:
            prompt = np.array([[sot, self._language_id(language), *tail]] * batch, dtype=np.int64)
            return (prompt.shape[1], *self._first(prompt, hidden))
        # language detection: the most likely language token after <|startoftranscript|>, per clip
        logits, self_kv, cross_kv = self._first(np.full((batch, 1), sot, dtype=np.int64), hidden)
        lang_ids = np.array(sorted(int(i) for i in (self.generation_config.lang_to_id or {}).values()))
        if lang_ids.size == 0:
            raise GeodistillError(f"{self.folder}: generation_config.json has no lang_to_id; pass --language")
        langs = lang_ids[logits[:, lang_ids].argmax(-1)]
        rest = np.array([[lang, *tail] for lang in langs], dtype=np.int64)
        logits, self_kv = self._step(rest, self_kv, cross_kv)
        return 1 + rest.shape[1], logits, self_kv, cross_kv

    def _first(self, ids: np.ndarray, hidden: np.ndarray):
        """decoder.onnx over the first tokens: (last logits, self K/V, cross K/V)."""
        out = self.decoder.run(None, {"input_ids": ids, "encoder_hidden_states": hidden})
        n = len(self.past_names)
        return out[0][:, -1], out[1 : 1 + n], out[1 + n :]

    def _step(self, ids: np.ndarray, self_kv: list, cross_kv: list):
        """decoder_with_past.onnx over new tokens: (last logits, grown self K/V)."""
        feed = {"input_ids": ids, **dict(zip(self.past_names, self_kv, strict=True))}
        feed.update(zip(self.cross_names, cross_kv, strict=True))
        out = self.decoder_with_past.run(None, feed)
        return out[0][:, -1], out[1:]

    def generate(
        self,
        input_features: torch.Tensor,
        num_beams: int = 1,
        max_new_tokens: int = 224,
        language: str | None = None,
        task: str | None = None,
        do_sample: bool = False,
        use_cache: bool = True,
        temperature: float = 0.0,
        logprobs: list[float] | None = None,
        **unsupported,
    ) -> torch.LongTensor:
        """Token ids (B, T) of ``input_features`` (B, n_mels, even frames <= 3000), prompt excluded, padded
        with <|endoftext|>. Raises GeodistillError for beam search and HF-only options.

        ``temperature`` above 0 samples (seeded by ``fallback.SEED``, so a clip samples the same way every
        call); ``logprobs``: a list, extended with each clip's mean log-probability (the end token counted).
        """
        if unsupported:
            raise GeodistillError(f"{PURPOSE} does not support {', '.join(sorted(unsupported))}")
        if num_beams != 1:
            raise GeodistillError(
                f"--beam-size {num_beams}: {PURPOSE} decodes greedily; use --beam-size 1 (or --engine hf/ct2)"
            )
        feats = input_features.detach().to("cpu", torch.float32).contiguous().numpy()
        longest = 2 * self.config.max_source_positions
        frames = feats.shape[-1]
        if frames % 2 or not 0 < frames <= longest:
            raise GeodistillError(
                f"input_features: {frames} Mel frames; need a multiple of 2 up to {longest}"
            )
        hidden = self.encode(feats)
        used, logits, self_kv, cross_kv = self._start(hidden, language, task)
        steps = max(0, min(max_new_tokens, self.config.max_target_positions - used))
        eot = self._eot()
        suppress = np.array(self.generation_config.suppress_tokens or [], dtype=np.int64)
        begin = np.array(self.generation_config.begin_suppress_tokens or [], dtype=np.int64)
        batch = feats.shape[0]
        tokens = np.full((batch, steps), eot, dtype=np.int64)
        lengths = np.full(batch, steps)
        done = np.zeros(batch, dtype=bool)
        total = np.zeros(batch)  # summed log-probabilities of each clip's tokens
        rng = np.random.default_rng(SEED)
        for step in range(steps):
            scores = logits.astype(np.float32, copy=True)
            scores[:, suppress] = -np.inf
            if step == 0:
                scores[:, begin] = -np.inf
            logp = scores - np.logaddexp.reduce(scores, axis=-1, keepdims=True)
            pick = _sample(logp, temperature, rng) if temperature > 0 else scores.argmax(-1)
            nxt = np.where(done, eot, pick)
            tokens[:, step] = nxt
            total += np.where(done, 0.0, logp[np.arange(batch), nxt])
            ended = ~done & (nxt == eot)
            lengths[ended] = step
            done |= ended
            if done.all() or step + 1 == steps:
                break
            logits, self_kv = self._step(nxt[:, None], self_kv, cross_kv)
        if logprobs is not None:  # the end token counts, where the clip reached it
            logprobs.extend((total / np.maximum(lengths + done, 1)).tolist())
        width = int(lengths.max()) if batch else 0
        return torch.from_numpy(tokens[:, :width].copy())


def _sample(logp: np.ndarray, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """One token per row, drawn from softmax(logp / temperature)."""
    scaled = logp / temperature
    probs = np.exp(scaled - scaled.max(-1, keepdims=True))
    cumulative = np.cumsum(probs / probs.sum(-1, keepdims=True), axis=-1)
    draws = rng.random((logp.shape[0], 1))
    return np.minimum((cumulative < draws).sum(-1), logp.shape[-1] - 1)


def onnx_fields(model: OnnxWhisper) -> dict:
    """eval.json fields of the ONNX engine: parameters counted off the graphs' weights (the encoder's and
    the first decoder step's, which holds every decoder weight), disk size of every graph file."""
    onnx = require("onnx", "onnx", PURPOSE)
    params = 0
    for name in (ENCODER, DECODER):
        graph = onnx.load(str(model.folder / name), load_external_data=False).graph
        params += sum(int(np.prod(t.dims)) for t in graph.initializer if int(np.prod(t.dims)) > 1)
    files = [p for p in model.folder.iterdir() if p.is_file() and ".onnx" in p.name]
    return {
        "engine": "onnx",
        "params": params,
        "disk_mb": sum(p.stat().st_size for p in files) / 2**20,
        "dtype": "float32",
        "device": "cpu (onnxruntime)",
    }
