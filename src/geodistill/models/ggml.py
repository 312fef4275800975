"""Write whisper.cpp model files from a Hugging Face Whisper folder.

whisper.cpp's ``whisper_model_load`` reads the legacy ``ggml`` layout, all little-endian::

    i32 magic 0x67676d6c ("ggml")
    11 x i32 hparams: n_vocab n_audio_ctx n_audio_state n_audio_head n_audio_layer
                      n_text_ctx n_text_state n_text_head n_text_layer n_mels ftype
    i32 n_mel | i32 n_fft | n_mel * n_fft f32         Mel filter bank (80 or 128 x 201)
    i32 n_tokens | n_tokens x (u32 len | len bytes)  regular BPE tokens in id order, as raw bytes
    per tensor: i32 n_dims | i32 name_len | i32 ttype | n_dims x i32 ne (innermost first) | name | data

``ftype`` picks the type of the big matrices (0 f32, 1 f16, 7 q8_0; quantised files add 1000 x the
quantisation version, 2, as whisper.cpp's ``quantize`` tool does). The loader creates every tensor with a
fixed type and refuses a file whose tensor does not match, so the storage rule is whisper.cpp's, not a
choice: 1-D tensors (biases, norms), the conv biases (stored as (n, 1)) and both positional embeddings are
f32; the conv weights are f16 (f32 in an f32 file; ggml's conv does not take quantised kernels); every
other 2-D matrix, the token embedding included, has the file's type. A q8_0 file therefore needs rows that
are whole 32-value blocks: ``d_model`` a multiple of 32. q8_0 block: one f16 scale ``d = max|x| / 127``
then 32 int8 ``round(x / d)`` (34 bytes).

whisper.cpp supplies the special tokens (end of text, start of transcript, languages, timestamps) itself
from ``n_vocab``, so the vocabulary holds only the ids below ``<|endoftext|>``. It also assumes what every
OpenAI Whisper has: equal encoder and decoder widths, MLPs 4 x wide, GELU, no embedding scale, an output
projection tied to the token embedding; a model without them is refused with a one-line error.

``read_ggml`` parses a file back (tensors dequantised to float32, in the HF shape order) so tests can
compare it with the HF weights, and reports a damaged file as a one-line ``ModelLoadError``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import WhisperFeatureExtractor, WhisperProcessor

from geodistill.errors import GeodistillError, StorageError
from geodistill.models.ct2_convert import CONTEXT_FILE
from geodistill.models.trim import VOCAB_KEY

GGML_MAGIC = 0x67676D6C
GGML_FILE = "ggml-model.bin"  # the file of `export --format ggml` and of `--engine whispercpp`'s cache
DTYPES = ("f16", "f32", "q8_0")
FTYPES = {"f32": 0, "f16": 1, "q8_0": 7}  # ggml_ftype: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0
QNT_VERSION = 2  # GGML_QNT_VERSION, written into a quantised file's ftype as whisper.cpp's quantize does
QNT_VERSION_FACTOR = 1000
HPARAMS = (
    "n_vocab",
    "n_audio_ctx",
    "n_audio_state",
    "n_audio_head",
    "n_audio_layer",
    "n_text_ctx",
    "n_text_state",
    "n_text_head",
    "n_text_layer",
    "n_mels",
    "ftype",
)
# ggml_type codes this module writes and reads
T_F32, T_F16, T_Q8_0 = 0, 1, 8
TYPE_NAMES = {T_F32: "f32", T_F16: "f16", T_Q8_0: "q8_0"}
TYPE_CODES = {v: k for k, v in TYPE_NAMES.items()}
Q8_BLOCK = 32  # values per q8_0 block
Q8_DTYPE = np.dtype([("d", "<f2"), ("qs", "i1", (Q8_BLOCK,))])  # 34 bytes, no padding
N_FFT = 400  # Whisper's STFT size -> 201 frequency bins
MAX_NAME = 256  # longer tensor names mean a damaged file
EOT = "<|endoftext|>"
DEFAULT_MARGIN = 64  # geodistill.models.context.DEFAULT_MARGIN

# HF block submodule -> whisper.cpp block submodule (see whisper.cpp's convert-h5-to-ggml.py)
_ATTN = {"q_proj": "query", "k_proj": "key", "v_proj": "value", "out_proj": "out"}
_BLOCK = {
    **{f"self_attn.{hf}": f"attn.{cpp}" for hf, cpp in _ATTN.items()},
    **{f"encoder_attn.{hf}": f"cross_attn.{cpp}" for hf, cpp in _ATTN.items()},
    "self_attn_layer_norm": "attn_ln",
    "encoder_attn_layer_norm": "cross_attn_ln",
    "final_layer_norm": "mlp_ln",
    "fc1": "mlp.0",
    "fc2": "mlp.2",
}
_GLOBAL = {
    "encoder.conv1": "encoder.conv1",
    "encoder.conv2": "encoder.conv2",
    "encoder.embed_positions": "encoder.positional_embedding",
    "encoder.layer_norm": "encoder.ln_post",
    "decoder.embed_positions": "decoder.positional_embedding",
    "decoder.embed_tokens": "decoder.token_embedding",
    "decoder.layer_norm": "decoder.ln",
}
_POSITIONAL = ("encoder.positional_embedding", "decoder.positional_embedding")
_CONV_BIASES = ("encoder.conv1.bias", "encoder.conv2.bias")
_LAYER_KEY = re.compile(r"(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")


def ggml_name(hf_key: str) -> str | None:
    """whisper.cpp's name for an HF Whisper state-dict key (``model.`` prefix optional), or None if it
    has none (``proj_out.weight``, which whisper.cpp ties to the token embedding, or an unknown key)."""
    key = hf_key.removeprefix("model.")
    m = _LAYER_KEY.fullmatch(key)
    if m:
        part = _BLOCK.get(m[3])
        return None if part is None else f"{m[1]}.blocks.{m[2]}.{part}.{m[4]}"
    module, _, leaf = key.rpartition(".")
    if module not in _GLOBAL:
        return None
    cpp = _GLOBAL[module]
    return cpp if cpp in _POSITIONAL else f"{cpp}.{leaf}"


def expected_shapes(hp: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Every tensor whisper.cpp's loader creates, with its numpy shape (outermost first), in load order."""
    d, n_mels = hp["n_audio_state"], hp["n_mels"]
    shapes: dict[str, tuple[int, ...]] = {
        "encoder.positional_embedding": (hp["n_audio_ctx"], d),
        "encoder.conv1.weight": (d, n_mels, 3),
        "encoder.conv1.bias": (d, 1),
        "encoder.conv2.weight": (d, d, 3),
        "encoder.conv2.bias": (d, 1),
        "encoder.ln_post.weight": (d,),
        "encoder.ln_post.bias": (d,),
    }

    def block(prefix: str, cross: bool) -> None:
        parts = ["attn"] + (["cross_attn"] if cross else [])
        for p in parts:
            shapes[f"{prefix}.{p}_ln.weight"] = shapes[f"{prefix}.{p}_ln.bias"] = (d,)
            for proj in ("query", "key", "value", "out"):
                shapes[f"{prefix}.{p}.{proj}.weight"] = (d, d)
                if proj != "key":  # Whisper's key projections have no bias
                    shapes[f"{prefix}.{p}.{proj}.bias"] = (d,)
        shapes[f"{prefix}.mlp_ln.weight"] = shapes[f"{prefix}.mlp_ln.bias"] = (d,)
        shapes[f"{prefix}.mlp.0.weight"], shapes[f"{prefix}.mlp.0.bias"] = (4 * d, d), (4 * d,)
        shapes[f"{prefix}.mlp.2.weight"], shapes[f"{prefix}.mlp.2.bias"] = (d, 4 * d), (d,)

    for i in range(hp["n_audio_layer"]):
        block(f"encoder.blocks.{i}", cross=False)
    shapes["decoder.positional_embedding"] = (hp["n_text_ctx"], d)
    shapes["decoder.token_embedding.weight"] = (hp["n_vocab"], d)
    shapes["decoder.ln.weight"] = shapes["decoder.ln.bias"] = (d,)
    for i in range(hp["n_text_layer"]):
        block(f"decoder.blocks.{i}", cross=True)
    return shapes


def storage_type(name: str, ndim: int, dtype: str) -> str:
    """The type whisper.cpp's loader expects for tensor ``name`` (of ``ndim`` dims) in a ``dtype`` file."""
    if ndim == 1 or name in _CONV_BIASES or name in _POSITIONAL:
        return "f32"
    if ndim == 3:  # conv kernels
        return "f32" if dtype == "f32" else "f16"
    return dtype


# ---------------------------------------------------------------------------------------------- q8_0


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """C's roundf (ties away from zero), which ggml's reference quantiser uses; numpy rounds ties to even."""
    return np.trunc(x + np.copysign(np.float32(0.5), x))


def quantize_q8_0(values: np.ndarray) -> np.ndarray:
    """float values (size a multiple of 32, row-major) -> q8_0 blocks (structured array, 34 bytes each)."""
    blocks = np.ascontiguousarray(values, dtype=np.float32).reshape(-1, Q8_BLOCK)
    d = np.abs(blocks).max(axis=1) / np.float32(127)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d > 0)
    out = np.empty(len(blocks), dtype=Q8_DTYPE)
    out["d"] = d.astype(np.float16)
    out["qs"] = np.clip(_round_half_away(blocks * inv[:, None]), -127, 127).astype(np.int8)
    return out


def dequantize_q8_0(blocks: np.ndarray) -> np.ndarray:
    """q8_0 blocks -> flat float32 values (fp16 scale x int8)."""
    return (blocks["d"].astype(np.float32)[:, None] * blocks["qs"].astype(np.float32)).reshape(-1)


def _encode(values: np.ndarray, ttype: str) -> bytes:
    if ttype == "f32":
        return np.ascontiguousarray(values, dtype="<f4").tobytes()
    if ttype == "f16":
        return np.ascontiguousarray(values, dtype="<f2").tobytes()
    return quantize_q8_0(values).tobytes()


def nbytes(n_elements: int, ttype: int) -> int:
    if ttype == T_Q8_0:
        return n_elements // Q8_BLOCK * Q8_DTYPE.itemsize
    return n_elements * (4 if ttype == T_F32 else 2)


# ------------------------------------------------------------------------------------ the HF folder


def _fail(hf_dir: Path, reason: str) -> GeodistillError:
    return GeodistillError(f"cannot write a whisper.cpp model from {hf_dir}: {reason}")


def _hf_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise _fail(hf_dir, "no config.json (not a Hugging Face Whisper folder)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(hf_dir, f"unreadable config.json ({exc})") from exc
    if not isinstance(config, dict) or config.get("model_type") != "whisper":
        kind = config.get("model_type") if isinstance(config, dict) else None
        raise _fail(hf_dir, f"config.json is for model_type {kind!r}, not 'whisper'")
    return config


def _hparams(hf_dir: Path, config: dict, dtype: str) -> dict[str, int]:
    try:
        d = int(config["d_model"])
        hp = {
            "n_vocab": int(config["vocab_size"]),
            "n_audio_ctx": int(config["max_source_positions"]),
            "n_audio_state": d,
            "n_audio_head": int(config["encoder_attention_heads"]),
            "n_audio_layer": int(config["encoder_layers"]),
            "n_text_ctx": int(config["max_target_positions"]),
            "n_text_state": d,
            "n_text_head": int(config["decoder_attention_heads"]),
            "n_text_layer": int(config["decoder_layers"]),
            "n_mels": int(config["num_mel_bins"]),
            "ftype": FTYPES[dtype] + (QNT_VERSION * QNT_VERSION_FACTOR if dtype == "q8_0" else 0),
        }
        ffn = (int(config["encoder_ffn_dim"]), int(config["decoder_ffn_dim"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(hf_dir, f"config.json lacks a usable Whisper setting ({exc})") from exc
    if ffn != (4 * d, 4 * d):
        raise _fail(hf_dir, f"MLP widths {ffn} are not 4 x d_model = {4 * d}, which whisper.cpp assumes")
    if config.get("activation_function", "gelu") != "gelu":
        raise _fail(hf_dir, f"activation {config['activation_function']!r}; whisper.cpp only runs GELU")
    if config.get("scale_embedding"):
        raise _fail(hf_dir, "scale_embedding is on; whisper.cpp does not scale embeddings")
    if dtype == "q8_0" and d % Q8_BLOCK:
        raise _fail(hf_dir, f"q8_0 needs d_model a multiple of {Q8_BLOCK} (got {d}); use f16 or f32")
    return hp


def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level BPE: the printable stand-in character of each byte -> the byte.

    Printable Latin-1 bytes ("!".."~", "¡".."¬", "®".."ÿ") stand for themselves; the other 68 bytes, in
    increasing order, are shifted to code points 256, 257, ...
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {chr(b): b for b in printable}
    others = [b for b in range(256) if b not in set(printable)]
    table.update({chr(256 + i): b for i, b in enumerate(others)})
    return table


def _vocabulary(hf_dir: Path) -> list[bytes]:
    """The regular tokens (ids below ``<|endoftext|>``) of the folder's tokenizer, as raw bytes."""
    path = hf_dir / "tokenizer.json"
    try:
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            vocab = dict(data["model"]["vocab"])
            vocab.update({t["content"]: t["id"] for t in data.get("added_tokens", [])})
        elif (hf_dir / "vocab.json").is_file():
            path = hf_dir / "vocab.json"
            vocab = json.loads(path.read_text(encoding="utf-8"))
            added = hf_dir / "added_tokens.json"
            if added.is_file():
                vocab.update(json.loads(added.read_text(encoding="utf-8")))
        else:
            raise _fail(hf_dir, "no tokenizer.json or vocab.json (save the processor with the model)")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _fail(hf_dir, f"unreadable tokenizer in {path.name} ({exc})") from exc
    if EOT not in vocab:
        raise _fail(hf_dir, f"{path.name} has no {EOT} token")
    eot = int(vocab[EOT])
    by_id = {int(i): tok for tok, i in vocab.items() if int(i) < eot}
    decoder = _byte_decoder()
    tokens = []
    for i in range(eot):
        text = by_id.get(i, "")  # a gap (OpenAI's multilingual vocabulary has one) stays empty
        try:
            tokens.append(bytes(decoder[c] for c in text))
        except KeyError as exc:
            raise _fail(hf_dir, f"token {i} {text!r} is not byte-level BPE") from exc
    return tokens


def mel_filters(n_mels: int) -> np.ndarray:
    """Whisper's Slaney-style Mel filter bank, (n_mels, 201) float32, from transformers' feature extractor."""
    fe = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=16000, n_fft=N_FFT)
    return np.ascontiguousarray(np.asarray(fe.mel_filters, dtype=np.float32).T)


class _Weights:
    """The folder's safetensors weights (one file or an indexed set of shards), read one tensor at a time."""

    def __init__(self, hf_dir: Path):
        index = hf_dir / "model.safetensors.index.json"
        if (hf_dir / "model.safetensors").is_file():
            files = [hf_dir / "model.safetensors"]
        elif index.is_file():
            try:
                shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError) as exc:
                raise _fail(hf_dir, f"unreadable {index.name} ({exc})") from exc
            files = [hf_dir / s for s in sorted(shards)]
        else:
            raise _fail(hf_dir, "no model.safetensors (save the model with save_pretrained)")
        self.where: dict[str, object] = {}
        try:
            for f in files:
                handle = safe_open(str(f), framework="pt")
                self.where.update(dict.fromkeys(handle.keys(), handle))
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise _fail(hf_dir, f"unreadable weights ({exc})") from exc

    def get(self, key: str) -> np.ndarray:
        return self.where[key].get_tensor(key).to(torch.float32).numpy()  # type: ignore[attr-defined]


def _tensors(hf_dir: Path, hp: dict[str, int]) -> Iterator[tuple[str, np.ndarray]]:
    """(whisper.cpp name, float32 array in whisper.cpp's shape) for every tensor, in the loader's order."""
    weights = _Weights(hf_dir)
    expected = expected_shapes(hp)
    source: dict[str, str] = {}
    for key in weights.where:
        name = ggml_name(key)
        if name is None and key.removeprefix("model.") != "proj_out.weight":
            raise _fail(hf_dir, f"weight {key!r} has no place in a whisper.cpp model")
        if name is not None:
            if name not in expected:
                raise _fail(hf_dir, f"weight {key!r} does not fit the config's sizes")
            source[name] = key
    missing = [n for n in expected if n not in source]
    if missing:
        raise _fail(hf_dir, f"{len(missing)} weights missing, e.g. the one whisper.cpp calls {missing[0]!r}")
    proj = next((k for k in weights.where if k.removeprefix("model.") == "proj_out.weight"), None)
    if proj is not None:
        if not np.array_equal(weights.get(proj), weights.get(source["decoder.token_embedding.weight"])):
            raise _fail(hf_dir, "proj_out is not tied to the token embedding, which whisper.cpp assumes")
    for name, shape in expected.items():
        data = weights.get(source[name])
        if name in _CONV_BIASES:
            data = data.reshape(-1, 1)
        if data.shape != shape:
            raise _fail(hf_dir, f"{source[name]} has shape {data.shape}, expected {shape} from config.json")
        yield name, data


def _tensor_header(name: str, shape: tuple[int, ...], ttype: str) -> bytes:
    raw = name.encode("utf-8")
    dims = tuple(reversed(shape))  # ggml lists dimensions innermost first
    return struct.pack(f"<3i{len(dims)}i", len(dims), len(raw), TYPE_CODES[ttype], *dims) + raw


def write_ggml(hf_dir: Path, out_file: Path, dtype: str = "f16") -> Path:
    """Write the Whisper model in HF folder ``hf_dir`` as a whisper.cpp model file ``out_file``.

    ``dtype``: ``f16`` (default, what whisper.cpp distributes), ``f32`` or ``q8_0`` (8-bit blocks of 32,
    about half the size of f16). The file is written to a temporary sibling and renamed into place, so a
    crash never leaves a half-written model. Raises a one-line GeodistillError naming the folder for a
    model whisper.cpp cannot hold, StorageError when the disk refuses the write. A dynamic-context
    student's rule does not fit in the file: see ``context_rule``.
    """
    hf_dir, out_file = Path(hf_dir), Path(out_file)
    if dtype not in DTYPES:
        raise GeodistillError(f"whisper.cpp model type {dtype!r}: must be one of {', '.join(DTYPES)}")
    if not hf_dir.is_dir():
        raise _fail(hf_dir, "not a folder")
    config = _hf_config(hf_dir)
    if config.get(VOCAB_KEY) == "trimmed":
        raise _fail(
            hf_dir,
            "student.vocab: trimmed, and whisper.cpp ties its head to the whole embedding and places the "
            "special ids by n_vocab; export it as hf, ct2 or onnx",
        )
    hp = _hparams(hf_dir, config, dtype)
    vocab = _vocabulary(hf_dir)
    if len(vocab) > hp["n_vocab"]:
        raise _fail(hf_dir, f"{len(vocab)} regular tokens in the tokenizer, vocab_size only {hp['n_vocab']}")
    filters = mel_filters(hp["n_mels"])
    tensors = _tensors(hf_dir, hp)  # a generator: the weights are checked before anything is written
    first = next(tensors)
    tmp = None
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        # a new sibling (not mkstemp, whose 0600 mode would stick to the model file)
        tmp = out_file.with_name(f".{out_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "xb") as f:
            f.write(struct.pack("<12i", GGML_MAGIC, *(hp[k] for k in HPARAMS)))
            f.write(struct.pack("<2i", *filters.shape))
            f.write(filters.astype("<f4").tobytes())
            f.write(struct.pack("<i", len(vocab)))
            for token in vocab:
                f.write(struct.pack("<I", len(token)) + token)
            for name, data in itertools.chain([first], tensors):  # one tensor in memory at a time
                ttype = storage_type(name, data.ndim, dtype)
                f.write(_tensor_header(name, data.shape, ttype))
                f.write(_encode(data, ttype))
        os.replace(tmp, out_file)
        tmp = None
    except OSError as exc:
        raise StorageError(f"cannot write {out_file} ({exc.strerror or exc})") from exc
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return out_file


def context_rule(hf_dir: Path) -> dict:
    """A dynamic-context student's audio-context rule from its config.json (``geodistill_audio_context``,
    ``geodistill_context_margin``), which a whisper.cpp file has no place for; {} for a full-context model.
    The caller stores it next to the model file and passes it to ``WhisperCppModel``."""
    config = _hf_config(Path(hf_dir))
    if config.get("geodistill_audio_context", "full") == "full":
        return {}
    return {
        "geodistill_audio_context": config["geodistill_audio_context"],
        "geodistill_context_margin": int(config.get("geodistill_context_margin", DEFAULT_MARGIN)),
    }


def write_ggml_folder(hf_dir: Path, out: Path, dtype: str) -> None:
    """``GGML_FILE`` + tokenizer.json + preprocessor_config.json + a dynamic student's context rule."""
    write_ggml(hf_dir, out / GGML_FILE, dtype)
    processor = WhisperProcessor.from_pretrained(hf_dir, local_files_only=True)
    processor.tokenizer.save_pretrained(out)
    processor.feature_extractor.save_pretrained(out)
    rule = context_rule(hf_dir)
    if rule:
        (out / CONTEXT_FILE).write_text(json.dumps(rule, indent=2) + "\n", encoding="utf-8")
