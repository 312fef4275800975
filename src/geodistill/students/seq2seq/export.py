"""Export of a Whisper student: a plain Hugging Face folder (``hf``), a CTranslate2 model (``ct2``) or ONNX
graphs (``onnx``).

- ``hf``: ``model.safetensors`` (adapters already merged by the run), ``config.json``,
  ``generation_config.json``, the processor files and a ``README.md`` model card with the Hub's YAML
  front matter (WER/RTF from the run's own ``eval.json`` when there is one). Loading it needs
  transformers only.
- ``ct2``: CTranslate2's own ``TransformersConverter`` over that HF folder
  (``geodistill.models.ct2_convert``), plus the ``tokenizer.json`` and ``preprocessor_config.json``
  faster-whisper reads; loads in ``faster_whisper.WhisperModel(DIR)``.
- ``onnx``: ``encoder.onnx`` (any even frame count up to 3000), ``decoder.onnx`` and
  ``decoder_with_past.onnx`` (``geodistill.models.onnx``), fp32, with the config, generation config and
  processor files; runs in ONNX Runtime (``--engine onnx``). Written atomically (temp folder, then rename).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from transformers import WhisperForConditionalGeneration, WhisperProcessor

from geodistill.modelcard import evaluation_lines, front_matter
from geodistill.models.ct2_convert import CONTEXT_FILE, convert_to_ct2
from geodistill.models.loading import local_model_dir
from geodistill.models.onnx import export_onnx
from geodistill.optional import require
from geodistill.students.family import Card

FORMATS: tuple[str, ...] = ("hf", "ct2", "onnx")


def export(folder: Path, out: Path, fmt: str, quantization: str | None, card: Card) -> None:
    """Write the Whisper model in ``folder`` (an HF or CTranslate2 folder) to ``out`` as ``fmt``."""
    if fmt == "ct2":
        require("ctranslate2", "deploy", "exporting to CTranslate2")
    if fmt == "onnx":
        require("onnx", "onnx", "exporting to ONNX")
    model_dir = local_model_dir(folder)
    with tempfile.TemporaryDirectory(prefix="geodistill-export-") as tmp:
        hf_dir = out if fmt == "hf" else Path(tmp) / "hf"
        hf_dir.mkdir(parents=True, exist_ok=True)
        write_hf(model_dir, hf_dir)
        text = model_card(hf_dir, card, fmt)
        if fmt == "onnx":  # the graphs and the card land together (temp folder, then rename)
            export_onnx(hf_dir, out, readme=text)
            return
        if fmt == "ct2":
            convert_to_ct2(hf_dir, out, quantization or "float32")
        (out / "README.md").write_text(text, encoding="utf-8")


def write_hf(model_dir: Path, out: Path) -> None:
    """Re-save the model (safetensors), its generation config and its processor into ``out``."""

    model = WhisperForConditionalGeneration.from_pretrained(model_dir, local_files_only=True)
    model.save_pretrained(out)
    processor = WhisperProcessor.from_pretrained(model_dir, local_files_only=True)
    processor.save_pretrained(out)
    # transformers 5 folds the feature extractor into processor_config.json; faster-whisper (and older
    # transformers) read preprocessor_config.json
    processor.feature_extractor.save_pretrained(out)


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


def model_card(hf_dir: Path, card: Card, fmt: str = "hf") -> str:
    """README.md text: Hub YAML front matter, evaluation, how the model was distilled, how to load it."""
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    cfg, evaluation, name, source = card.cfg, card.evaluation, card.name, card.source
    meta = front_matter(config.get("vocab_size", 51864) > 51864, name, cfg, evaluation, card.license)
    if fmt == "ct2":  # the Hub lists CTranslate2 Whisper models under ctranslate2 + faster-whisper
        meta["library_name"] = "ctranslate2"
        meta["tags"] += ["ctranslate2", "faster-whisper"]
    if fmt == "onnx":
        meta["library_name"] = "onnx"
        meta["tags"] += ["onnx", "onnxruntime"]
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {name}", ""]
    lines += [f"A Whisper student distilled with geodistill from `{cfg.get('teacher', source)}`.", ""]
    lines += evaluation_lines(evaluation)
    lines += ["## How it was distilled", "", *_distillation_lines(cfg, config), ""]
    if fmt == "onnx":
        lines += _onnx_lines(config)
        return "\n".join(lines)
    lines += [
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
    return "\n".join(lines)


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
