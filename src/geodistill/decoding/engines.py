"""Decoding engines behind ``transcribe`` / ``evaluate --engine``: Hugging Face (default), CTranslate2 and
ONNX Runtime.

``Ct2Whisper`` wraps ``ctranslate2.models.Whisper`` in the slice of the HF model interface geodistill's
decoding uses (``generate(features, num_beams=, max_new_tokens=, language=, task=)``, ``config``,
``generation_config``, ``device``, ``eval()``), so ``evaluate`` times and scores both engines with the same
code. Any model spec works: a CTranslate2 folder made by ``geodistill export --format ct2`` is used as it
is; anything else is converted once (CTranslate2's own converter) into ``<cache>/ct2/`` and reused.
CTranslate2 accepts fewer than 3000 feature frames, so a short-context student keeps its short input.

``OnnxWhisper`` (``geodistill.decoding.onnx``) does the same for ONNX Runtime: a folder made by
``geodistill export --format onnx`` is used as it is, anything else is exported once into ``<cache>/onnx/``.
It decodes greedily, clips of up to 30 s, without the temperature fallback; ``check_engine`` refuses the
rest before anything loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch
from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

from geodistill.decoding.assistant import AssistedWhisper, with_assistant
from geodistill.decoding.onnx import OnnxWhisper, load_processor, onnx_fields
from geodistill.decoding.options import DecodeOptions
from geodistill.errors import GeodistillError, ModelLoadError
from geodistill.models import load_whisper, resolve_device
from geodistill.models.ct2 import read_ct2
from geodistill.models.ct2_convert import CONTEXT_FILE, convert_to_ct2
from geodistill.models.loading import EMBEDDED, converted_dir, embedded_source, local_model_dir
from geodistill.models.onnx import is_onnx_folder, write_onnx
from geodistill.optional import require
from geodistill.paths import cache_dir

ENGINES = ("hf", "ct2", "onnx")
COMPUTE_TYPES = ("int8", "int8_float32", "int8_float16", "float16", "float32")
DEFAULT_COMPUTE_TYPE = "int8"  # CPU int8: what faster-whisper users deploy
CT2_REVISION = 1  # bump when the conversion changes so stale cache entries are not reused
ONNX_REVISION = 1  # the same for the ONNX export (geodistill.models.onnx)
ENGLISH_ONLY_VOCAB = 51864


def is_ct2_folder(folder: Path) -> bool:
    """A converter-made CTranslate2 Whisper folder (model.bin + vocabulary + tokenizer.json)."""
    vocab = (folder / "vocabulary.json").is_file() or (folder / "vocabulary.txt").is_file()
    return (folder / "model.bin").is_file() and vocab and (folder / "tokenizer.json").is_file()


def hf_folder(spec: str) -> Path:
    """The HF Whisper folder behind a model spec (embedded names and CT2 folders converted, hub ids
    saved under ``<cache>/hub/`` once)."""

    if spec in EMBEDDED:
        return converted_dir(embedded_source(spec))
    path = Path(spec).expanduser()
    if path.exists():
        return local_model_dir(path)
    saved = cache_dir() / "hub" / re.sub(r"[^\w.-]", "_", spec)
    if not (saved / "config.json").is_file():
        model, processor = load_whisper(spec, device="cpu")
        model.save_pretrained(saved)
        processor.save_pretrained(saved)
    return saved


def _fingerprint(folder: Path, tag: str) -> str:
    """12 hex digits naming ``folder``'s HF files (path, size, mtime) converted as ``tag``."""
    h = hashlib.sha256(tag.encode())
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        st = path.stat()
        h.update(f"|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def _cache_entry(spec: str, kind: str, tag: str) -> tuple[Path, Path]:
    """(HF folder behind ``spec``, its conversion's folder ``<cache>/<kind>/<name>-<fingerprint>``)."""
    hf = hf_folder(spec)
    name = re.sub(r"[^\w.-]", "_", Path(spec).name or spec)
    return hf, cache_dir() / kind / f"{name}-{_fingerprint(hf, tag)}"


def _convert_once(final: Path, convert, done) -> Path:
    """``convert(tmp)`` into a temporary folder renamed to ``final`` (a crash leaves nothing half-done);
    ``done(folder)`` says whether a folder is complete (a concurrent run may have finished first)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        convert(tmp)
        try:
            os.replace(tmp, final)
        except OSError:
            if not done(final):  # else a concurrent run finished first: use its copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def ct2_folder(spec: str, quantization: str = DEFAULT_COMPUTE_TYPE) -> Path:
    """A CTranslate2 folder for ``spec``: itself if it is one, else its conversion under ``<cache>/ct2/``.

    Conversion writes into a temporary folder and renames it into place (a crash leaves nothing half-done).
    """
    path = Path(spec).expanduser()
    if path.is_dir() and is_ct2_folder(path):
        return path
    ctranslate2 = require("ctranslate2", "deploy", "--engine ct2")
    tag = f"geodistill-ct2-{CT2_REVISION}-{ctranslate2.__version__}-{quantization}"
    hf, final = _cache_entry(spec, "ct2", tag)
    if is_ct2_folder(final):
        return final
    return _convert_once(final, lambda tmp: convert_to_ct2(hf, tmp, quantization), is_ct2_folder)


def onnx_folder(spec: str) -> Path:
    """An ONNX export of ``spec``: itself if it is one, else its export under ``<cache>/onnx/`` (made once,
    atomically, as ``ct2_folder``)."""
    path = Path(spec).expanduser()
    if path.is_dir() and is_onnx_folder(path):
        return path
    require("onnxruntime", "onnx", "--engine onnx")
    require("onnx", "onnx", "--engine onnx")
    hf, final = _cache_entry(spec, "onnx", f"geodistill-onnx-{ONNX_REVISION}-{torch.__version__}")
    if is_onnx_folder(final):
        return final
    return _convert_once(final, lambda tmp: write_onnx(hf, tmp), is_onnx_folder)


def check_engine(options: DecodeOptions) -> DecodeOptions:
    """The options as the engine applies them, refusing in one line what it cannot do.

    ``onnx`` decodes greedily, one 30-s window per clip: beam search and an asked-for temperature fallback
    are refused; the model's own safeguard (``fallback`` None) is off, and clips over 30 s are refused as
    for a model without long-form decoding (``long_form`` off).
    """
    if options.engine != "onnx":
        return options
    if options.beam_size != 1:
        raise GeodistillError(
            f"--beam-size {options.beam_size}: --engine onnx decodes greedily; use --beam-size 1 "
            "(or --engine hf / ct2 for beam search)"
        )
    if options.fallback:
        raise GeodistillError(
            "--fallback: --engine onnx has no temperature fallback (greedy only); "
            "drop it or use --engine hf / ct2"
        )
    return replace(options, fallback=False, long_form=False)


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


def _context_rule(folder: Path) -> dict:
    """The dynamic-context rule ``geodistill export`` kept next to model.bin ({} for full context)."""

    path = folder / CONTEXT_FILE
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{path}: unreadable context rule ({exc})") from exc


def _vocab_size(folder: Path) -> int:
    """Output vocabulary size of a CT2 folder (vocabulary.json list, else vocabulary.txt lines)."""
    if (folder / "vocabulary.json").is_file():
        return len(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8")))
    return len((folder / "vocabulary.txt").read_text(encoding="utf-8").splitlines())


class Ct2Whisper:
    """``ctranslate2.models.Whisper`` behind the HF-generate slice geodistill decodes with (module doc)."""

    training = False

    def __init__(
        self, folder: Path, processor, device: str = "cpu", compute_type: str = DEFAULT_COMPUTE_TYPE
    ):
        ctranslate2 = require("ctranslate2", "deploy", "--engine ct2")
        threads = torch.get_num_threads()
        self.folder, self.compute_type, self.processor = folder, compute_type, processor
        self.model = ctranslate2.models.Whisper(
            str(folder), device=device, compute_type=compute_type, intra_threads=threads
        )
        self.ct2_device = device
        self.device = torch.device("cpu")  # where the features are made; CT2 copies them itself
        self.dtype = torch.float32  # the dtype CT2 takes features in
        self.config = SimpleNamespace(max_target_positions=448, vocab_size=_vocab_size(folder))
        self.config.__dict__.update(_context_rule(folder))  # a dynamic-context student keeps its rule
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

    def eval(self) -> Ct2Whisper:
        return self

    def train(self, mode: bool = True) -> Ct2Whisper:
        return self

    def parameters(self):
        """No torch parameters (see ``engine_fields`` for the counts read off model.bin)."""
        return iter(())

    def state_dict(self) -> dict:
        return {}

    def _prompt(self, language: str | None, task: str | None, features) -> list[list[str]]:
        """Per-item prompt: <|sot|> [<|lang|> <|task|>] <|notimestamps|> (language detected if None)."""
        n = features.shape[0]
        if not self.model.is_multilingual:
            return [["<|startoftranscript|>", "<|notimestamps|>"]] * n
        if language:
            langs = [f"<|{language}|>"] * n
        else:
            langs = [result[0][0] for result in self.model.detect_language(features)]
        return [
            ["<|startoftranscript|>", lang, f"<|{task or 'transcribe'}|>", "<|notimestamps|>"]
            for lang in langs
        ]

    def generate(
        self,
        input_features: torch.Tensor,
        num_beams: int = 1,
        max_new_tokens: int = 224,
        language: str | None = None,
        task: str | None = None,
        do_sample: bool = False,
        use_cache: bool = True,
        **unsupported,
    ) -> torch.LongTensor:
        """Token ids (B, T) of ``input_features`` (B, n_mels, frames <= 3000), prompt excluded, padded with
        <|endoftext|>. Raises GeodistillError for HF-only options (assistant models, timestamps)."""
        if unsupported:
            raise GeodistillError(f"--engine ct2 does not support {', '.join(sorted(unsupported))}")
        import ctranslate2  # noqa: PLC0415 (optional extra [deploy])

        feats = ctranslate2.StorageView.from_array(input_features.float().contiguous().numpy())
        prompts = self._prompt(language, task, feats)
        # Measured with CTranslate2 4.8: Whisper stops after floor(max_length / 2) new tokens, not
        # max_length - len(prompt); ask for enough and cut at max_new_tokens, as HF's generate does.
        results = self.model.generate(
            feats,
            prompts,
            beam_size=num_beams,
            max_length=2 * max_new_tokens + len(prompts[0]),
            suppress_blank=True,
        )
        seqs = [r.sequences_ids[0][:max_new_tokens] for r in results]
        eot = self.processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
        width = max((len(s) for s in seqs), default=0)
        return torch.tensor([s + [eot] * (width - len(s)) for s in seqs], dtype=torch.long).reshape(
            len(seqs), -1
        )


def _assisted(spec, device: str, assistant: str):
    """(model, processor, device): the Whisper ``spec`` (or a loaded pair) drafting with ``assistant``."""

    if isinstance(spec, tuple | list):
        teacher, processor = spec
    else:
        teacher, processor = load_whisper(str(spec), device=device)
        teacher.eval()
    return with_assistant(teacher, processor, assistant), processor, teacher.device


def engine_fields(model) -> dict:
    """eval.json fields naming the engine; a CT2 model's parameters and size are read off model.bin."""

    if isinstance(model, AssistedWhisper):
        return {"engine": "hf", **model.fields()}
    if isinstance(model, OnnxWhisper):
        return onnx_fields(model)
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
    compute_type: str = DEFAULT_COMPUTE_TYPE,
    assistant: str | None = None,
):
    """(model, processor, device) for ``engine`` ("ct2", "onnx"), or the HF ``spec`` drafting with
    ``assistant``."""
    if engine not in ENGINES:
        raise GeodistillError(f"--engine: unknown engine '{engine}' (choose {' or '.join(ENGINES)})")
    if compute_type not in COMPUTE_TYPES:
        raise GeodistillError(f"--compute-type: unknown '{compute_type}' (choose {', '.join(COMPUTE_TYPES)})")
    if assistant is not None:
        if engine != "hf":
            raise GeodistillError("--assistant needs --engine hf (assisted generation is transformers')")
        return _assisted(spec, device, assistant)
    if isinstance(spec, tuple | list):
        raise GeodistillError(
            f"--engine {engine} needs a model spec or folder, not a model already in memory"
        )
    if engine == "onnx":
        folder = onnx_folder(str(spec))
        model = OnnxWhisper(folder, load_processor(folder))
        return model, model.processor, torch.device("cpu")

    ct2_device = "cuda" if resolve_device(device).type == "cuda" else "cpu"
    folder = ct2_folder(str(spec), compute_type)
    model = Ct2Whisper(folder, _processor(folder), ct2_device, compute_type)
    return model, model.processor, torch.device("cpu")
