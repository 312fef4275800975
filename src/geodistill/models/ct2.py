"""Read CTranslate2 (faster-whisper) Whisper models and turn them into Hugging Face Whisper models.

``model.bin`` layout (little-endian, version 6)::

    u32 version | str spec_name | u32 revision | u32 n_variables
    n_variables x (str name | u8 rank | u32 dims[rank] | u8 dtype | u32 nbytes | bytes)
    u32 n_aliases | n_aliases x (str alias | str target)

where ``str`` is a u16 length (including a trailing NUL) followed by the bytes. The file is only ever
parsed with numpy views on a memory map; nothing in it is executed.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import (
    GenerationConfig,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
    WhisperProcessor,
    WhisperTokenizer,
)

from geodistill.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperTokenizer

CT2_VERSION = 6  # the binary layout this reader understands
SPEC_NAME = "WhisperSpec"
GELU = 3  # CTranslate2's ActivationType.GELU, the only activation Whisper uses
HEAD_DIM = 64  # every OpenAI Whisper size uses 64-wide attention heads (tiny 384/6, base 512/8, ...)
N_TEXT_CTX = 448  # Whisper's decoder context (max_target_positions), the generation length cap

# dtype code -> numpy dtype; bfloat16 (5) has no numpy dtype and is read as raw uint16 then viewed.
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}

# Scalars CTranslate2 stores to describe the decoder; geodistill only converts the Whisper variant.
_EXPECTED_FLAGS = {
    "decoder/activation": GELU,
    "decoder/alibi": 0,
    "decoder/alibi_use_positive_positions": 0,  # written by CTranslate2 >= 4 converters
    "decoder/scale_alibi": 0,  # written by CTranslate2 >= 4 converters
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
}
# Scalars kept only for CTranslate2's own timestamp alignment; config.json carries the real alignment heads.
_IGNORED_SCALARS = ("decoder/alignment_heads", "decoder/alignment_layer")


class _Reader:
    """Sequential reader over a byte buffer that turns every overrun into a ModelLoadError."""

    def __init__(self, buf: np.ndarray, name: str):
        self.buf, self.name, self.pos = buf, name, 0

    def take(self, n: int, what: str) -> np.ndarray:
        if self.pos + n > len(self.buf):
            raise ModelLoadError(
                f"{self.name}: truncated or corrupt while reading {what} "
                f"(needs {n} bytes at offset {self.pos}, file has {len(self.buf)})"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what).tobytes(), "little")

    def string(self, what: str) -> str:
        n = self.uint(2, f"length of {what}")
        raw = self.take(n, what).tobytes()
        if n == 0 or raw[-1] != 0:
            raise ModelLoadError(f"{self.name}: corrupt {what} (string is not NUL-terminated)")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelLoadError(f"{self.name}: corrupt {what} (not UTF-8)") from exc


def _map_parts(parts: Sequence[Path]) -> np.ndarray:
    """One read-only uint8 view of the file, or of several parts concatenated in order (copied)."""
    for p in parts:
        if not Path(p).is_file():
            raise ModelLoadError(f"{p}: no such file")
    maps = [
        np.memmap(p, dtype=np.uint8, mode="r") if Path(p).stat().st_size else np.zeros(0, np.uint8)
        for p in parts
    ]
    return maps[0] if len(maps) == 1 else np.concatenate(maps)


def _read_tensor(r: _Reader, name: str) -> torch.Tensor:
    rank = r.uint(1, f"rank of '{name}'")
    dims = [r.uint(4, f"shape of '{name}'") for _ in range(rank)]
    code = r.uint(1, f"dtype of '{name}'")
    if code not in _DTYPES:
        raise ModelLoadError(f"{r.name}: variable '{name}' has unknown dtype code {code} (expected 0-5)")
    nbytes = r.uint(4, f"size of '{name}'")
    want = int(np.prod(dims, dtype=np.int64)) * _DTYPES[code].itemsize
    if nbytes != want:
        raise ModelLoadError(f"{r.name}: variable '{name}' has {nbytes} bytes but shape {dims} needs {want}")
    raw = r.take(nbytes, f"data of '{name}' ({nbytes} bytes)")
    # copy so the tensor owns writable memory and the memory map can be closed
    arr = np.frombuffer(raw, dtype=_DTYPES[code]).reshape(dims).copy()
    tensor = torch.from_numpy(arr)
    return tensor.view(torch.bfloat16) if code == 5 else tensor


def read_ct2(parts: Sequence[Path] | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Parse a CTranslate2 ``model.bin`` (optionally split into parts that concatenate to it).

    Returns ``(variables, aliases)``: name -> tensor in its stored dtype and shape, alias -> target name.
    """
    parts = [Path(parts)] if isinstance(parts, str | Path) else [Path(p) for p in parts]
    name = str(parts[0]) if len(parts) == 1 else " + ".join(str(p) for p in parts)
    r = _Reader(_map_parts(parts), name)
    version = r.uint(4, "format version")
    if version != CT2_VERSION:
        raise ModelLoadError(f"{name}: CTranslate2 format version {version}, expected {CT2_VERSION}")
    spec = r.string("spec name")
    if spec != SPEC_NAME:
        raise ModelLoadError(f"{name}: spec '{spec}' is not a Whisper model (expected '{SPEC_NAME}')")
    r.uint(4, "spec revision")
    variables: dict[str, torch.Tensor] = {}
    for i in range(r.uint(4, "variable count")):
        var = r.string(f"name of variable #{i}")
        variables[var] = _read_tensor(r, var)
    aliases = {}
    for i in range(r.uint(4, "alias count")):
        alias = r.string(f"alias #{i}")
        aliases[alias] = r.string(f"target of alias '{alias}'")
    if r.pos != len(r.buf):
        raise ModelLoadError(f"{name}: {len(r.buf) - r.pos} unexpected bytes after the last alias")
    for alias, target in aliases.items():
        if target not in variables:
            raise ModelLoadError(f"{name}: alias '{alias}' points to missing variable '{target}'")
    return variables, aliases


class _Taker:
    """Hands out CT2 variables by name (following aliases) and remembers which ones were used."""

    def __init__(self, variables: dict[str, torch.Tensor], aliases: dict[str, str], source: str):
        self.variables, self.aliases, self.source = variables, aliases, source
        self.used: set[str] = set()

    def __call__(self, name: str) -> torch.Tensor:
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise ModelLoadError(f"{self.source}: missing variable '{name}' in the CTranslate2 model")
        tensor = self.variables[target]
        if tensor.numel() > 1 and not tensor.is_floating_point():
            raise ModelLoadError(
                f"{self.source}: '{name}' is stored as {tensor.dtype} (a quantized model); only float32, "
                "float16 and bfloat16 CTranslate2 models can be converted"
            )
        self.used.add(target)
        return tensor

    def scalar(self, name: str, default: int | None = None) -> int | None:
        if name not in self.variables:
            return default
        value = self(name)
        if value.numel() != 1:
            raise ModelLoadError(f"{self.source}: '{name}' should be a scalar, has shape {list(value.shape)}")
        return int(value.item())


def _layer_count(variables: dict[str, torch.Tensor], side: str, source: str) -> int:
    found = {int(m.group(1)) for k in variables if (m := re.match(rf"{side}/layer_(\d+)/", k))}
    if not found or found != set(range(len(found))):
        raise ModelLoadError(f"{source}: {side} layers {sorted(found)} are not numbered 0..n-1")
    return len(found)


def whisper_dims(variables: dict[str, torch.Tensor], aliases: dict[str, str], source: str) -> dict:
    """WhisperConfig size fields, all read off tensor shapes (CT2's config.json does not store them)."""
    take = _Taker(variables, aliases, source)
    d_model, n_mels, _ = take("encoder/conv1/weight").shape
    heads = {}
    for side in ("encoder", "decoder"):
        # Older converters did not store num_heads; every OpenAI Whisper uses 64-wide heads.
        heads[side] = take.scalar(f"{side}/num_heads", default=max(1, d_model // HEAD_DIM))
        if heads[side] <= 0 or d_model % heads[side]:
            raise ModelLoadError(
                f"{source}: {side}/num_heads={heads[side]} does not divide d_model={d_model}"
            )
    projection = aliases.get("decoder/projection/weight", "decoder/projection/weight")
    return {
        "num_mel_bins": int(n_mels),
        "d_model": int(d_model),
        "encoder_layers": _layer_count(variables, "encoder", source),
        "decoder_layers": _layer_count(variables, "decoder", source),
        "encoder_attention_heads": heads["encoder"],
        "decoder_attention_heads": heads["decoder"],
        "encoder_ffn_dim": int(take("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        "decoder_ffn_dim": int(take("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        "vocab_size": int(take("decoder/embeddings/weight").shape[0]),
        "max_source_positions": int(take("encoder/position_encodings/encodings").shape[0]),
        "max_target_positions": int(take("decoder/position_encodings/encodings").shape[0]),
        "tie_word_embeddings": projection == "decoder/embeddings/weight",
    }


def _linear(sd: dict, take: _Taker, src: str, dst: str) -> None:
    sd[f"{dst}.weight"] = take(f"{src}/weight")
    sd[f"{dst}.bias"] = take(f"{src}/bias")


def _norm(sd: dict, take: _Taker, src: str, dst: str) -> None:
    sd[f"{dst}.weight"] = take(f"{src}/gamma")
    sd[f"{dst}.bias"] = take(f"{src}/beta")


def _fused(sd: dict, take: _Taker, src: str, dsts: Sequence[str]) -> None:
    """Split a fused projection row-wise. HF's k_proj has no bias: CT2 stores zeros there, and a key
    bias adds the same q·b to every score of a query, which softmax cancels, so dropping it is exact."""
    weights = take(f"{src}/weight").chunk(len(dsts), dim=0)
    biases = take(f"{src}/bias").chunk(len(dsts), dim=0)
    for dst, w, b in zip(dsts, weights, biases, strict=True):
        sd[f"{dst}.weight"] = w.clone()  # clone: safetensors refuses tensors that share storage
        if not dst.endswith("k_proj"):
            sd[f"{dst}.bias"] = b.clone()


def _layer(sd: dict, take: _Taker, src: str, dst: str, cross: bool) -> None:
    _fused(sd, take, f"{src}/self_attention/linear_0", [f"{dst}.self_attn.{p}_proj" for p in "qkv"])
    _linear(sd, take, f"{src}/self_attention/linear_1", f"{dst}.self_attn.out_proj")
    _norm(sd, take, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
    if cross:
        _linear(sd, take, f"{src}/attention/linear_0", f"{dst}.encoder_attn.q_proj")
        _fused(sd, take, f"{src}/attention/linear_1", [f"{dst}.encoder_attn.{p}_proj" for p in "kv"])
        _linear(sd, take, f"{src}/attention/linear_2", f"{dst}.encoder_attn.out_proj")
        _norm(sd, take, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
    _linear(sd, take, f"{src}/ffn/linear_0", f"{dst}.fc1")
    _linear(sd, take, f"{src}/ffn/linear_1", f"{dst}.fc2")
    _norm(sd, take, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")


def ct2_state_dict(
    variables: dict[str, torch.Tensor], aliases: dict[str, str], dims: dict, source: str
) -> dict[str, torch.Tensor]:
    """Map every CT2 Whisper variable onto ``WhisperForConditionalGeneration`` parameter names.

    Raises ModelLoadError if a decoder flag describes a non-Whisper variant or a variable is left unused.
    """
    take, sd = _Taker(variables, aliases, source), {}
    for name, want in _EXPECTED_FLAGS.items():
        got = take.scalar(name, default=want)
        if got != want:
            raise ModelLoadError(f"{source}: '{name}' is {got}, Whisper needs {want}")
    for name in _IGNORED_SCALARS:
        take.scalar(name)
    for side in ("encoder", "decoder"):
        take.scalar(f"{side}/num_heads")
        sd[f"model.{side}.embed_positions.weight"] = take(f"{side}/position_encodings/encodings")
        _norm(sd, take, f"{side}/layer_norm", f"model.{side}.layer_norm")
        for i in range(dims[f"{side}_layers"]):
            _layer(sd, take, f"{side}/layer_{i}", f"model.{side}.layers.{i}", cross=side == "decoder")
    _linear(sd, take, "encoder/conv1", "model.encoder.conv1")
    _linear(sd, take, "encoder/conv2", "model.encoder.conv2")
    sd["model.decoder.embed_tokens.weight"] = take("decoder/embeddings/weight")
    sd["proj_out.weight"] = take("decoder/projection/weight")
    unused = sorted(set(variables) - take.used)
    if unused:
        raise ModelLoadError(
            f"{source}: {len(unused)} CTranslate2 variables not understood, e.g. {unused[:3]}"
        )
    return sd


def build_whisper(
    variables: dict[str, torch.Tensor], aliases: dict[str, str], source: str, **config_kwargs
) -> WhisperForConditionalGeneration:
    """A ``WhisperForConditionalGeneration`` holding exactly the CT2 weights (in their stored dtype).

    The model is built on the meta device so no random weights exist to be left behind: every
    parameter must come from the file (strict load), and any tensor still on meta is an error.
    """

    dims = whisper_dims(variables, aliases, source)
    state = ct2_state_dict(variables, aliases, dims, source)
    config = WhisperConfig(**dims, activation_function="gelu", **config_kwargs)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        reason = str(exc).strip().splitlines()[-1].strip()
        raise ModelLoadError(f"{source}: weights do not fit a Whisper model ({reason})") from exc
    if dims["tie_word_embeddings"]:
        model.tie_weights()
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ModelLoadError(f"{source}: no weights in the file for {left[:3]}")
    model.config.dtype = state["model.decoder.embed_tokens.weight"].dtype
    return model.eval()


def _restore_first_merge(tokenizer_json: dict) -> bool:
    """Put back GPT-2's first BPE merge ('Ġ', 't') if a converter dropped it (the base package's
    tokenizer.json did: without it " the" splits into "Ġ" + "the"). Returns whether it was missing."""
    model = tokenizer_json["model"]
    merges, vocab = model["merges"], model["vocab"]
    as_text = bool(merges) and isinstance(merges[0], str)
    present = {m if as_text else " ".join(m) for m in merges}
    if "Ġ t" in present or "Ġt" not in vocab:
        return False
    merges.insert(0, "Ġ t" if as_text else ["Ġ", "t"])
    return True


def english_normalizer_file() -> Path:
    """The English spelling map (normalizer.json) Whisper's EnglishTextNormalizer needs.

    CT2 packages ship no normalizer.json; the whisper-normalizer package carries the same map.
    """

    try:
        path = Path(str(files("whisper_normalizer") / "normalizers" / "english.json"))
    except ModuleNotFoundError as exc:
        raise ModelLoadError("whisper-normalizer is not installed: pip install whisper-normalizer") from exc
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing (whisper-normalizer install is incomplete)")
    return path


def load_ct2_tokenizer(tokenizer_file: Path, work_dir: Path) -> WhisperTokenizer:
    """WhisperTokenizer from a CT2 ``tokenizer.json`` (first merge restored) with pad = <|endoftext|>.

    The repaired JSON is written into ``work_dir`` because the tokenizer loads from a file.
    """

    try:
        data = json.loads(Path(tokenizer_file).read_text(encoding="utf-8"))
        _restore_first_merge(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{tokenizer_file}: not a usable tokenizer.json ({exc})") from exc
    fixed = Path(work_dir) / "tokenizer.json"
    fixed.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return WhisperTokenizer(
        tokenizer_file=str(fixed), normalizer_file=str(english_normalizer_file()), pad_token="<|endoftext|>"
    )


def _token_ids(tokenizer: WhisperTokenizer, source: str) -> dict[str, int]:
    vocab = tokenizer.get_vocab()
    names = {
        "sot": "<|startoftranscript|>",
        "eot": "<|endoftext|>",
        "no_timestamps": "<|notimestamps|>",
        "prev_sot": "<|startofprev|>",
        "transcribe": "<|transcribe|>",
        "translate": "<|translate|>",
    }
    missing = [tok for tok in names.values() if tok not in vocab]
    if missing:
        raise ModelLoadError(f"{source}: tokenizer has no special token(s) {missing}")
    return {key: vocab[tok] for key, tok in names.items()}


def build_generation_config(
    ct2_config: dict, tokenizer: WhisperTokenizer, vocab_size: int, source: str
) -> GenerationConfig:
    """GenerationConfig from CT2's config.json (suppression lists, alignment heads, languages) plus the
    tokenizer's special tokens, matching what OpenAI's checkpoints on the HF hub carry."""

    keys = ("alignment_heads", "lang_ids", "suppress_ids", "suppress_ids_begin")
    missing = [k for k in keys if k not in ct2_config]
    if missing:
        raise ModelLoadError(f"{source}: config.json lacks {missing}")
    ids = _token_ids(tokenizer, source)
    multilingual = vocab_size >= 51865  # openai/whisper: English-only models have 51864 tokens
    gen = GenerationConfig(
        decoder_start_token_id=ids["sot"],
        bos_token_id=ids["eot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        no_timestamps_token_id=ids["no_timestamps"],
        prev_sot_token_id=ids["prev_sot"],
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(h) for h in ct2_config["alignment_heads"]],
        max_length=N_TEXT_CTX,
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
    )
    if multilingual:
        tokens = tokenizer.convert_ids_to_tokens(list(ct2_config["lang_ids"]))
        gen.lang_to_id = dict(zip(tokens, ct2_config["lang_ids"], strict=True))
        gen.task_to_id = {"transcribe": ids["transcribe"], "translate": ids["translate"]}
    return gen


def convert_ct2(parts: Sequence[Path], config_file: Path, tokenizer_file: Path, out_dir: Path) -> None:
    """Write an HF Whisper folder (safetensors weights, config, generation config, processor with
    tokenizer, normalizer.json and feature extractor) converted from a CT2 model into ``out_dir``."""

    source = str(Path(parts[0]).parent)
    try:
        ct2_config = json.loads(Path(config_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{config_file}: unreadable CTranslate2 config.json ({exc})") from exc
    variables, aliases = read_ct2(parts)
    tokenizer = load_ct2_tokenizer(tokenizer_file, out_dir)
    ids = _token_ids(tokenizer, source)
    model = build_whisper(
        variables,
        aliases,
        source,
        decoder_start_token_id=ids["sot"],
        bos_token_id=ids["eot"],
        eos_token_id=ids["eot"],
        pad_token_id=ids["eot"],
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
    )
    model.generation_config = build_generation_config(ct2_config, tokenizer, model.config.vocab_size, source)
    features = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    model.save_pretrained(out_dir)
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out_dir)
    # save_pretrained (transformers 5) does not write the spelling map; from_pretrained does read it back
    shutil.copyfile(english_normalizer_file(), Path(out_dir) / "normalizer.json")
