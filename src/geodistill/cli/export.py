"""``geodistill export SOURCE --format hf|ct2|ggml|onnx --out DIR``: ship a student as a model folder."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    q = sub.add_parser(
        "export", help="ship a run's student as a Hugging Face, CTranslate2 or ONNX model folder"
    )
    q.add_argument("source", help="run folder (best/ else adapter_final/) or any model spec")
    q.add_argument(
        "--format",
        required=True,
        help="hf (transformers + card) | ct2 (faster-whisper) | ggml (whisper.cpp) | onnx (ONNX Runtime)",
    )
    q.add_argument("--out", required=True, help="new (or empty) output folder")
    q.add_argument(
        "--quantization",
        default=None,
        help="ct2: float32 (default) | int8 | int8_float32 | float16; ggml: f16 (default) | q8_0",
    )
    q.add_argument("--eval", default=None, help="eval.json the model card quotes (default: the run's own)")
    q.add_argument("--license", default="mit", help="license in the model card (Whisper's weights: mit)")
    q.add_argument("--name", default=None, help="the model card's title (default: the source folder's name)")
    q.set_defaults(fn=_export)


def _export(a: argparse.Namespace) -> int:
    # imported in the handler: --help stays fast (torch, transformers)
    from geodistill.export import export  # noqa: PLC0415

    print(
        export(
            a.source,
            a.format,
            a.out,
            quantization=a.quantization,
            eval_json=a.eval,
            license=a.license,
            name=a.name,
        )
    )
    return 0
