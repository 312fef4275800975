"""`make demo`: the whole pipeline on the offline demo corpus, teacher vs student side by side.

corpus (real recordings held out, synthetic speech to train on) -> distil (the shipped preset dynamic-cpu)
-> evaluate teacher and student the same way on the real recordings -> report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from geodistill.config import load_config, read_yaml
from geodistill.corpus.demo_corpus import build_demo_corpus
from geodistill.corpus.requirements import ensure
from geodistill.corpus.synth import held_out_val
from geodistill.data import load_spec
from geodistill.errors import GeodistillError
from geodistill.train.loop import train

PRESET = "dynamic-cpu"  # a shipped preset (geodistill/presets/), so the demo runs from any install
COLUMNS = (
    ("params", "parameters", "{:,}"),
    ("disk_mb", "disk MB", "{:.1f}"),
    ("wer", "WER", "{:.3f}"),
    ("wer_raw", "WER (raw)", "{:.3f}"),
    ("cer", "CER", "{:.3f}"),
    ("rtf", "RTF", "{:.4f}"),
    ("peak_memory_mb", "peak MB", "{:.0f}"),
)


def comparison_table(teacher: dict, student: dict) -> str:
    """A Markdown table of the evaluation numbers of teacher and student."""
    lines = ["| | teacher | student |", "|---|---|---|"]
    for key, label, fmt in COLUMNS:
        cells = [fmt.format(r[key]) if r.get(key) is not None else "n/a" for r in (teacher, student)]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    if teacher.get("rtf") and student.get("rtf"):
        lines.append(f"| speed-up | | {teacher['rtf'] / student['rtf']:.2f}x |")
    return "\n".join(lines)


def evaluate_in_subprocess(model: str, data: str, out: Path, device: str, language: str | None) -> dict:
    """``geodistill evaluate`` in a fresh process, so each model's peak memory (process RSS) is its own."""
    cmd = [
        sys.executable,
        "-m",
        "geodistill.cli",
        "evaluate",
        "--model",
        model,
        "--data",
        data,
        "--out",
        str(out),
        "--device",
        device,
    ] + (["--language", language] if language else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise GeodistillError(f"evaluating {model} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads((out / "eval.json").read_text())


def run_demo(
    out: str | Path = "runs/demo", overrides: list[str] | None = None, preset: str | Path = PRESET
) -> dict:
    """Build the corpus, distil, evaluate both models on the real recordings, write the report.

    ``preset``: a shipped preset's name or a YAML file; refused before the corpus is built when it is
    neither; so is a machine without what the corpus needs (``corpus.requirements``: installed when run as
    root with apt-get, else one line naming the command)."""
    read_yaml(preset)
    ensure("demo")
    out = Path(out)
    started = time.time()
    corpus = Path(build_demo_corpus(out / "corpus"))
    test = str(corpus / "test")
    # The teacher runs once over the corpus (the cache), not at every step of every epoch.
    base = [
        f"data.train={corpus / 'train'}",
        f"run_dir={out / 'run'}",
        f"teacher_cache={out / 'teacher-cache'}",
    ]
    # Validation on voices and a sentence style the training never hears (else it saturates at WER 0),
    # a third of it short phrases (a student that loops on short clips must show it here).
    val = held_out_val(corpus / "val", exclude=[u.text for u in load_spec(test, min_duration=0.0)])
    base.append(f"data.val={val}")
    cfg = load_config(preset, [*base, *(overrides or [])])
    result = train(cfg)
    if result.exit_code:
        raise SystemExit(result.exit_code)
    run_dir = Path(cfg.run_dir)
    lang = cfg.data.language
    teacher = evaluate_in_subprocess(cfg.teacher, test, run_dir / "eval-teacher", cfg.train.device, lang)
    student = evaluate_in_subprocess(str(run_dir), test, run_dir / "eval-student", cfg.train.device, lang)
    table = comparison_table(teacher, student)
    summary = {
        "seconds": round(time.time() - started, 1),
        "teacher": cfg.teacher,
        "steps": result.step,
        "best_val_wer": result.best_wer,
        "table": table,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    print(f"\nTeacher {cfg.teacher} vs distilled student on {test} (real recordings):\n\n{table}\n")
    try:
        from geodistill.report import build_report  # noqa: PLC0415 (optional extra [report]: matplotlib, umap)
    except ImportError:  # the report extra is optional
        return summary
    index = build_report(run_dir, data=test)
    summary["report"] = str(index)
    print(f"report: {index}")
    print(f"demo took {time.time() - started:.0f} s")
    return summary
