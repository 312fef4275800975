"""The model card (README.md) of an exported Whisper student: Hub front matter, evaluation, how it was
distilled, and how to run it — for a dynamic-context student, which runtimes keep its speed-up and how."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from geodistill.modelcard import evaluation_lines, front_matter
from geodistill.models.ct2_convert import CONTEXT_FILE
from geodistill.students.family import Card

# A runnable snippet (the card's text; tests run it verbatim with PATH and speech.wav replaced): a
# CTranslate2 export of a dynamic-context student, without faster-whisper's 30-s padding.
CT2_SNIPPET = """import json
import math

import ctranslate2
import numpy as np
import soundfile as sf
from tokenizers import Tokenizer
from transformers import WhisperFeatureExtractor

folder = "PATH"
rule = json.load(open(f"{folder}/geodistill_context.json"))  # the student's audio context
model = ctranslate2.models.Whisper(folder, compute_type="int8")
extractor = WhisperFeatureExtractor.from_pretrained(folder)
tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")

audio, rate = sf.read("speech.wav", dtype="float32")  # 16-kHz mono, at most 30 s
positions = min(1500, math.ceil(math.ceil(len(audio) / 160) / 2) + rule["geodistill_context_margin"])
features = extractor(audio, sampling_rate=16000, return_tensors="np").input_features[:, :, : 2 * positions]
prompt = ["<|startoftranscript|>", "<|notimestamps|>"]
if model.is_multilingual:
    prompt[1:1] = ["<|en|>", "<|transcribe|>"]
features = ctranslate2.StorageView.from_array(np.ascontiguousarray(features))
result = model.generate(features, [prompt], beam_size=1)  # greedy (CTranslate2's default is 5 beams)
print(tokenizer.decode(result[0].sequences_ids[0]).strip())
"""


def _distillation_lines(cfg: dict, config: dict) -> list[str]:
    if not cfg:
        return ["Exported with geodistill (no training record found next to the model)."]
    student, loss = cfg.get("student", {}), cfg.get("loss", {})
    train, data = cfg.get("train", {}), cfg.get("data", {})
    return [
        f"- teacher: `{cfg.get('teacher')}`",
        f"- student: init `{student.get('init')}`, encoder layers {config.get('encoder_layers')}, decoder "
        f"layers {config.get('decoder_layers')} (config: encoder {student.get('encoder_layers')}, decoder "
        f"{student.get('decoder_layers')}), d_model {config.get('d_model')}, LoRA rank "
        f"{student.get('lora', {}).get('r')} (merged)",
        f"- losses: cross-entropy x {loss.get('ce_weight')}, KL(teacher||student) x {loss.get('kl_weight')} "
        f"at T={loss.get('temperature')}, {loss.get('hidden_loss')} hidden-state loss on "
        f"{loss.get('hidden_on')} x {loss.get('geo_weight')}, TAID {loss.get('taid')}",
        f"- steps: {train.get('max_steps')} (batch {train.get('batch_size')} x accumulation "
        f"{train.get('grad_accum')}, lr {train.get('lr')})",
        f"- data: train `{data.get('train')}`, validation `{data.get('val')}`",
    ]


WHISPERCPP_SNIPPET = """import math

import soundfile as sf
from pywhispercpp.model import Model

# flash attention off: with it whisper.cpp's decoder also reads up to 255 unmasked positions past audio_ctx
model = Model("PATH/ggml-model.bin", n_threads=2, no_timestamps=True, language="en",
              context_params={"flash_attn": False})
audio, rate = sf.read("speech.wav", dtype="float32")  # 16-kHz mono
MARGIN = {margin}  # geodistill_context.json's geodistill_context_margin
audio_ctx = min(1500, math.ceil(math.ceil(len(audio) / 160) / 2) + MARGIN)  # 0 = Whisper's full 30 s
print(" ".join(s.text.strip() for s in model.transcribe(audio, audio_ctx=audio_ctx)))
"""


def _whispercpp_use(margin: int | None) -> list[str]:
    """How to run the ggml export in whisper.cpp (with the audio context rule for a dynamic student)."""
    if margin is None:
        return [
            "## How to use",
            "",
            "`ggml-model.bin` loads in whisper.cpp (`whisper-cli -m ggml-model.bin -f speech.wav`) and its "
            'bindings, e.g. pywhispercpp: `Model("PATH/ggml-model.bin").transcribe("speech.wav")`.',
            "",
        ]
    return [
        "In whisper.cpp, pass each clip's audio context with flash attention off: `whisper-cli -m "
        "ggml-model.bin -f speech.wav --audio-ctx N --no-flash-attn` with N from the rule above, or per call "
        "in pywhispercpp:",
        "",
        "```python",
        WHISPERCPP_SNIPPET.replace("{margin}", str(margin)).rstrip(),
        "```",
        "",
    ]


def _full_context_use() -> list[str]:
    return [
        "## How to use",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        'asr = pipeline("automatic-speech-recognition", model="PATH_OR_HUB_ID")',
        'print(asr("speech.wav")["text"])',
        "```",
        "",
        "The CTranslate2 export (`geodistill export RUN --format ct2`) loads in faster-whisper:",
        "",
        "```python",
        "from faster_whisper import WhisperModel",
        "",
        'segments, info = WhisperModel("PATH", compute_type="int8").transcribe("speech.wav")',
        "```",
        "",
    ]


def _dynamic_context_use(margin: int, fmt: str) -> list[str]:
    """How to keep a dynamic-context student fast, in each runtime."""
    lines = [
        "## Audio context: keep it short, or lose the speed-up",
        "",
        f"This student runs its encoder over each clip plus a margin of {margin} encoder positions (20 ms "
        "each) instead of Whisper's fixed 30 s. For a clip of `n` samples at 16 kHz the encoder takes "
        f"`2 * min(1500, ceil(ceil(n / 160) / 2) + {margin})` log-Mel frames (the first frames of Whisper's "
        "usual 30-s features). That is where its speed comes from. The rule is stored in `config.json` "
        "(`geodistill_audio_context: dynamic`, `geodistill_context_margin`) and, for the CTranslate2 export, "
        "in `geodistill_context.json` next to `model.bin`.",
        "",
        "| runtime | keeps the short context | how |",
        "|---|---|---|",
        "| geodistill (`geodistill transcribe`, `geodistill evaluate`; `--engine hf` or `ct2`) | yes | "
        "it reads the rule itself |",
        "| CTranslate2 (`ctranslate2.models.Whisper.generate`) | yes | cut the features to the rule's "
        "frames (the ct2 export's card has the snippet) |",
        "| whisper.cpp (`whisper-cli --audio-ctx N`, pywhispercpp's `audio_ctx=N`) | yes | N = the rule's "
        "encoder positions, per clip, flash attention off (`--no-flash-attn`; the ggml export's card has the "
        "snippet) |",
        "| faster-whisper's `WhisperModel.transcribe`, transformers' `pipeline(\"automatic-speech-"
        'recognition")` | no | both pad every clip to 30 s: the encoder costs what a 30-s clip costs, and '
        "the student is no faster than its teacher (measured in geodistill's docs/export-and-runtimes.md) |",
        "",
    ]
    if fmt == "ct2":
        lines += ["With CTranslate2 directly (this folder; greedy, English):", "", "```python"]
        lines += [CT2_SNIPPET.rstrip(), "```", ""]
    elif fmt == "ggml":
        lines += _whispercpp_use(margin)
    else:
        lines += [
            "This folder runs in transformers as any Whisper does, at full context (slow). To keep the "
            "short context, use `geodistill transcribe PATH speech.wav`, or export it with "
            "`geodistill export RUN --format ct2` and run the CTranslate2 snippet in that export's card.",
            "",
        ]
    return lines


def _onnx_lines(config: dict) -> list[str]:
    """The ONNX card's graphs, their inputs and outputs, the dynamic-context rule and how to run it."""
    n, heads = config.get("decoder_layers"), config.get("decoder_attention_heads")
    kv = "(batch, heads, length, head_dim)"
    lines = [
        "## The ONNX graphs",
        "",
        f"fp32, opset 17; {n} decoder layers, {heads} heads. `i` runs over the decoder layers; `key|value` "
        f"tensors are {kv}.",
        "",
        "| graph | inputs | outputs |",
        "|---|---|---|",
        "| `encoder.onnx` | `input_features` (batch, n_mels, frames): log-Mel features, **any even frame "
        "count up to 3000** (30 s) | `last_hidden_state` (batch, frames / 2, d_model) |",
        "| `decoder.onnx` (first step) | `input_ids` (batch, tokens): the prompt; `encoder_hidden_states` "
        "(batch, positions, d_model) | `logits` (batch, tokens, vocab); `present.{i}.decoder.key\\|value` "
        "(self-attention cache); `present.{i}.encoder.key\\|value` (cross-attention, computed once) |",
        "| `decoder_with_past.onnx` (every later step) | `input_ids` (batch, tokens): the new token(s); "
        "`past_key_values.{i}.decoder.key\\|value` (length = tokens so far); "
        "`past_key_values.{i}.encoder.key\\|value` (from the first step) | `logits`; "
        "`present.{i}.decoder.key\\|value` (the cache grown by the new tokens) |",
        "",
        "Greedy decoding: run the encoder once, `decoder.onnx` once on the prompt `<|startoftranscript|>` "
        "[`<|lang|>` `<|task|>`] `<|notimestamps|>`, then `decoder_with_past.onnx` once per token, feeding "
        "back the `present.*.decoder.*` tensors as `past_key_values.*.decoder.*`, suppressing "
        "`suppress_tokens` (and `begin_suppress_tokens` at the first step) from `generation_config.json`, "
        "until `<|endoftext|>`.",
        "",
    ]
    if config.get("geodistill_audio_context", "full") == "dynamic":
        margin = config.get("geodistill_context_margin")
        lines += [
            "### Dynamic audio context",
            "",
            f"This student was trained to see each clip plus a margin of {margin} encoder positions, "
            f"not 30 s (the rule is kept in `{CONTEXT_FILE}`). Give the encoder the first",
            "",
            f"    frames = min(3000, 2 * (ceil(ceil(n_samples / 160) / 2) + {margin}))",
            "",
            "log-Mel frames of a clip of `n_samples` 16-kHz samples (the features of the clip padded to "
            "30 s, cut to `frames`; a batch takes its longest clip's count).",
            "",
        ]
    lines += [
        "## How to use",
        "",
        "With geodistill (ONNX Runtime, the decoding above):",
        "",
        "```bash",
        "geodistill transcribe PATH speech.wav --engine onnx",
        "```",
        "",
        "Or by hand:",
        "",
        "```python",
        "import onnxruntime as ort",
        "from transformers import WhisperProcessor",
        "",
        'processor = WhisperProcessor.from_pretrained("PATH")',
        'encoder = ort.InferenceSession("PATH/encoder.onnx")',
        'features = processor(audio, sampling_rate=16000, return_tensors="np").input_features',
        'hidden = encoder.run(None, {"input_features": features})[0]',
        "```",
        "",
    ]
    return lines


def model_card(hf_dir: Path, card: Card, fmt: str = "hf") -> str:
    """README.md text: Hub YAML front matter, evaluation, how the model was distilled, how to run it."""
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    cfg, evaluation, name, source = card.cfg, card.evaluation, card.name, card.source
    meta = front_matter(config.get("vocab_size", 51864) > 51864, name, cfg, evaluation, card.license)
    if fmt == "ct2":  # the Hub lists CTranslate2 Whisper models under ctranslate2 + faster-whisper
        meta["library_name"] = "ctranslate2"
        meta["tags"] += ["ctranslate2", "faster-whisper"]
    elif fmt == "ggml":  # and whisper.cpp models by their tags, with no transformers library
        meta.pop("library_name")
        meta["tags"] += ["whisper.cpp", "ggml"]
    elif fmt == "onnx":
        meta["library_name"] = "onnx"
        meta["tags"] += ["onnx", "onnxruntime"]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {name}", ""]
    lines += [f"A Whisper student distilled with geodistill from `{cfg.get('teacher', source)}`.", ""]
    lines += evaluation_lines(evaluation)
    lines += ["## How it was distilled", "", *_distillation_lines(cfg, config), ""]
    if fmt == "onnx":  # its graphs, their inputs and outputs, and (dynamic) its frames rule
        return "\n".join(lines + _onnx_lines(config))
    if config.get("geodistill_audio_context", "full") == "dynamic":
        lines += _dynamic_context_use(int(config.get("geodistill_context_margin", 0)), fmt)
    elif fmt == "ggml":
        lines += _whispercpp_use(None)
    else:
        lines += _full_context_use()
    return "\n".join(lines)
