"""``geodistill export --format hf`` of a CTC student: its safetensors folder and a model card.

The folder is what ``CTCStudent.save`` writes less the training parts (projector, provenance):
``model.safetensors``, ``ctc_config.json``, ``vocab.json`` and the processor's files (the log-Mel feature
extractor in ``preprocessor_config.json``). It loads with ``geodistill.students.ctc.model.load_ctc(DIR)``; the
model card (README.md) documents the files and loads the model with plain torch + safetensors (its code is
run by the tests against ``load_ctc``'s model). CTranslate2 has no CTC model, so there is no ``ct2`` form.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from geodistill.decoding.speed import count_params
from geodistill.modelcard import evaluation_lines, front_matter
from geodistill.students.ctc.loss import BLANK
from geodistill.students.ctc.model import MAX_POSITIONS, CTCShape, load_ctc, write_ctc
from geodistill.students.family import Card

PLAIN_TORCH = """import json
import math

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import WhisperFeatureExtractor

folder = "PATH"
cfg = json.load(open(f"{folder}/ctc_config.json"))
d, gelu = cfg["d_model"], nn.functional.gelu


class CTC(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(cfg["n_mels"], d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(MAX_POSITIONS, d))  # sinusoids, in the weights
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d, cfg["heads"], cfg["ffn"], 0.0, "gelu", batch_first=True, norm_first=True
            )
            for _ in range(cfg["layers"])
        )
        self.norm = nn.LayerNorm(d)
        self.down = nn.Conv1d(d, d, 3, stride=3) if cfg["downsample"] == 3 else None
        self.head = nn.Linear(d, len(cfg["vocab"]))

    def forward(self, features):  # (1, n_mels, F), F even <= 3000 -> (1, F // 2 // downsample, V)
        x = gelu(self.conv2(gelu(self.conv1(features)))).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        if self.down is not None:
            x = self.down(x.transpose(1, 2)).transpose(1, 2)
        return self.head(x).log_softmax(-1)


model = CTC().eval()
model.load_state_dict(load_file(f"{folder}/model.safetensors"))
extractor = WhisperFeatureExtractor.from_pretrained(folder)


@torch.no_grad()
def transcribe(audio):  # 16-kHz mono float32 samples, at most 30 s
    frames = 2 * math.ceil(math.ceil(len(audio) / 160) / 2)  # 10-ms log-Mel frames, an even count
    features = extractor(  # 2 frames more than kept: the last kept one sees zero padding, as in training
        audio, sampling_rate=16000, max_length=160 * (frames + 2), return_tensors="pt"
    ).input_features[..., :frames]
    best = model(features)[0].argmax(-1).unique_consecutive().tolist()
    text = "".join(cfg["vocab"][i] for i in best if i != BLANK)  # BPE pieces mark a word start with "\u2581"
    return " ".join(text.replace("\u2581", " ").split())
""".replace("MAX_POSITIONS", str(MAX_POSITIONS)).replace("BLANK", str(BLANK))


FORMATS: tuple[str, ...] = ("hf",)  # its own safetensors folder


def export(folder: Path, out: Path, fmt: str, quantization: str | None, card: Card) -> None:
    """Write the CTC student saved in ``folder`` and its model card into ``out`` (format ``hf`` only)."""
    model, processor = load_ctc(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_ctc(model, processor, out)
    text = ctc_model_card(
        model.shape, count_params(model), card.name, card.evaluation, card.cfg, card.license
    )
    (out / "README.md").write_text(text, encoding="utf-8")


def _units(shape: CTCShape) -> str:
    return "characters" if shape.units == "chars" else f"{len(shape.vocab) - 1} BPE pieces ({shape.units})"


def _vocabulary(vocab: tuple[str, ...]) -> str:
    names = {BLANK: "the CTC blank", **{i: repr(c) for i, c in enumerate(vocab) if i != BLANK}}
    return ", ".join(f"{i} {names[i]}" for i in range(len(vocab)))


def _distillation_lines(cfg: dict) -> list[str]:
    if not cfg:
        return ["Exported with geodistill (no training record found next to the model)."]
    student, loss = cfg.get("student", {}), cfg.get("loss", {})
    train, data = cfg.get("train", {}), cfg.get("data", {})
    init = (
        "copied from the teacher's encoder" if student.get("ctc", {}).get("init_from_teacher") else "random"
    )
    return [
        f"- teacher: `{cfg.get('teacher')}`; the student's convs, positions and first blocks: {init}",
        f"- losses: CTC on the transcript's characters x {loss.get('ce_weight')}, {loss.get('hidden_loss')} "
        f"hidden loss between its projected frames and the teacher's encoder states "
        f"({loss.get('encoder_align')}-aligned) x {loss.get('geo_weight')}; no KL (no decoder)",
        f"- steps: {train.get('max_steps')} (batch {train.get('batch_size')} x accumulation "
        f"{train.get('grad_accum')}, lr {train.get('lr')})",
        f"- data: train `{data.get('train')}`, validation `{data.get('val')}`",
    ]


def ctc_model_card(
    shape: CTCShape, params: int, name: str, evaluation: dict | None, cfg: dict, license: str = "mit"
) -> str:
    """README.md of an exported CTC student: front matter, evaluation, model, files, vocabulary, loading."""
    meta = front_matter(False, name, cfg, evaluation, license, family="ctc")
    meta.pop("library_name")  # plain torch: no Hub library loads it
    ms = 20 * shape.downsample
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).rstrip(), "---", "", f"# {name}", ""]
    teacher = f"`{cfg['teacher']}`" if cfg.get("teacher") else "a Whisper teacher"
    lines += [
        f"A CTC speech recogniser distilled with geodistill from {teacher}: no decoder, one distribution "
        f"over its units ({_units(shape)}) per audio frame, decoded greedily.",
        "",
        *evaluation_lines(evaluation),
        "## Model",
        "",
        f"log-Mel features ({shape.n_mels} bins, Whisper's extractor) -> Conv1d(k 3) -> GELU -> Conv1d(k 3, "
        f"stride 2) -> GELU -> + sinusoidal positions -> {shape.layers} pre-norm Transformer blocks (d_model "
        f"{shape.d_model}, {shape.heads} heads, ffn {shape.ffn}, GELU) -> LayerNorm"
        + (" -> Conv1d(k 3, stride 3)" if shape.downsample == 3 else "")
        + f" -> Linear -> log-softmax over {len(shape.vocab)} labels. One output frame per {ms} ms; "
        f"{params:,} parameters; clips of up to 30 s ({MAX_POSITIONS} positions).",
        "",
        "## How it was distilled",
        "",
        *_distillation_lines(cfg),
        "",
        "## Files",
        "",
        "- `model.safetensors`: float32 weights: `conv1.*`, `conv2.*`, `positions` (the sinusoid table, "
        f"({MAX_POSITIONS}, d_model)), `layers.N.*` (`torch.nn.TransformerEncoderLayer`, norm_first), "
        "`norm.*`, `down.*` (downsample 3 only), `head.*`",
        "- `ctc_config.json`: `n_mels`, `d_model`, `layers`, `heads`, `ffn`, `downsample` (1 or 3), "
        "`dropout` (training only), `vocab` (the labels, by id), `units` (chars or bpe:N)",
        "- `vocab.json`: the labels, by id; `preprocessor_config.json`: the log-Mel feature extractor",
        *(
            ["- `units.model`: the sentencepiece BPE model the pieces come from (to turn text into units)"]
            if shape.units != "chars"
            else []
        ),
        "",
        "## Vocabulary",
        "",
        f"Label ids: {_vocabulary(shape.vocab)}. Greedy decoding takes the best label per frame, collapses "
        'repeats and drops blanks; a BPE piece\'s "\u2581" starts a word. Transcripts are lower-case with '
        "digits spelled out and no punctuation.",
        "",
        "## How to use",
        "",
        "With geodistill installed: `geodistill transcribe PATH speech.wav`, "
        "`geodistill evaluate --model PATH --data DATA`, or in Python:",
        "",
        "```python",
        "from geodistill.students.ctc.model import load_ctc",
        "",
        'model, processor = load_ctc("PATH")  # eval mode; processor: the feature extractor',
        "# model(features (B, n_mels, F), positions (B,)) -> (log-probs (B, T, V), states, lengths (B,))",
        "```",
        "",
        "With plain torch + safetensors (and transformers' feature extractor), one clip at a time: the "
        "features are the clip's own frames (no 30-s padding); `model(features)` gives log-probs "
        "(1, F // 2 // downsample, len(vocab)). To batch clips of different lengths, pad the features "
        "and pass each layer a `src_key_padding_mask` over the padded positions.",
        "",
        "```python",
        PLAIN_TORCH.rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
