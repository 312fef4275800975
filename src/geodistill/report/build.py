"""``geodistill report RUN_DIR``: training curves, latent maps, distances and the teacher/student table.

Writes RUN_DIR/report/: PNG figures, ``report.json`` (every number shown, unrounded), ``report.md`` and
``index.html`` (self-contained apart from the PNGs beside it).
"""

from __future__ import annotations

import datetime
import json
import logging
import shutil
from pathlib import Path

import torch

from geodistill.ablate import ablation_of_run
from geodistill.errors import GeodistillError
from geodistill.evaluate.run import evaluate
from geodistill.models import resolve_device
from geodistill.report.html import render_html, render_markdown
from geodistill.report.latent import latent_section
from geodistill.report.plots import training_curves
from geodistill.report.runinfo import EVAL_DIRS, RunInfo, read_evals, read_run
from geodistill.students import family_of_folder

log = logging.getLogger("geodistill")

REPORT_DIR = "report"
OUTPUTS = ("index.html", "report.md", "report.json")
EVAL_BATCH = 8  # batch size of the evaluations the report runs itself (when the run folder has none)


def training_summary(history: dict) -> dict:
    """Last logged training values, last and best validation scores, skipped-step count."""
    train, val = history.get("train", []), history.get("val", [])
    steps = [e["step"] for e in train + val if "step" in e]
    wers = [e["wer"] for e in val if e.get("wer") is not None]
    return {
        "steps": max(steps) if steps else 0,
        "final": train[-1] if train else None,
        "final_val": val[-1] if val else None,
        "best_val_wer": min(wers) if wers else None,
        "skipped_steps": len(history.get("skipped", [])),
    }


def _latent(info: RunInfo, data: str | None, n: int, device: torch.device, out: Path) -> tuple[dict, list]:

    try:
        return latent_section(info, data, n, device, out)
    except GeodistillError as exc:
        if data is not None:  # the user named the data: a problem with it is theirs to fix
            raise
        log.warning("report: hidden-state views skipped: %s", exc)
        return {"skipped": f"{exc} (pass data to choose the utterances)"}, []


def comparison(
    info: RunInfo,
    utts: list,
    device: torch.device,
    out: Path,
    evaluate_missing: bool,
    max_new_tokens: int | None,
) -> dict:
    """{"teacher", "student": eval.json dicts or None, "source": where they came from}."""
    found = read_evals(info.run_dir)
    source = {role: str(info.run_dir / sub / "eval.json") for role, sub in EVAL_DIRS.items() if role in found}
    missing = [role for role in EVAL_DIRS if role not in found]
    if missing and evaluate_missing and utts:
        specs = {"teacher": info.cfg.teacher, "student": str(info.run_dir)}
        student_cap = max_new_tokens if family_of_folder(info.student_dir).token_cap else None
        caps = {"teacher": max_new_tokens, "student": student_cap}  # a CTC student: one label per frame
        for role in missing:
            log.info("report: evaluating the %s on the %d report utterances", role, len(utts))
            found[role] = evaluate(
                specs[role],
                utts,
                out=out / EVAL_DIRS[role],
                batch_size=EVAL_BATCH,
                device=str(device),
                language=info.cfg.data.language,
                max_new_tokens=caps[role],
            )
            source[role] = (
                f"run by the report on its {len(utts)} utterances ({out.name}/{EVAL_DIRS[role]}/eval.json)"
            )
    return {"teacher": found.get("teacher"), "student": found.get("student"), "source": source}


def _ablation(run_dir: Path, out: Path) -> dict | None:
    """The ablation this run is a cell of (its ablation.png copied beside the page), or None."""

    found = ablation_of_run(run_dir)
    if found is not None and (run_dir.parent / "ablation.png").is_file():
        shutil.copyfile(run_dir.parent / "ablation.png", out / "ablation.png")
    return found


def _clear(out: Path) -> None:
    """Remove what an earlier report wrote here, so the page never shows a stale figure."""
    for path in [*out.glob("*.png"), *(out / name for name in OUTPUTS)]:
        path.unlink(missing_ok=True)


def build_report(
    run_dir: str | Path,
    data: str | None = None,
    n: int = 32,
    device: str = "auto",
    evaluate_missing: bool = True,
    eval_max_new_tokens: int | None = None,
) -> Path:
    """Write RUN_DIR/report/ and return the path of its index.html.

    ``data``: a data spec whose first ``n`` usable utterances feed the hidden-state views (default: the
    run's validation data). Teacher/student numbers come from RUN_DIR/eval-teacher|eval-student/eval.json;
    a missing one is evaluated on those utterances when ``evaluate_missing`` (greedy, batch 8, at most
    ``eval_max_new_tokens`` tokens per utterance when given).
    """
    if n < 1:
        raise GeodistillError(f"report: n must be >= 1 utterance, got {n}")
    info = read_run(run_dir)
    out = info.run_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    _clear(out)
    for missing in info.missing:
        log.warning("report: %s is missing (%s): %s", missing["file"], missing["what"], missing["effect"])
    dev = resolve_device(device)
    curves = (
        training_curves(
            info.history, out / "training_curves.png", info.cfg.loss.hidden_loss, info.cfg.train.clip
        )
        if info.has_history
        else None
    )
    latent, utts = _latent(info, data, n, dev, out)
    report = {
        "run_dir": str(info.run_dir),
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "teacher": info.cfg.teacher,
        "student_dir": str(info.student_dir),
        "training": training_summary(info.history) if info.has_history else None,
        "training_image": curves.name if curves is not None else None,
        "missing": list(info.missing),
        "comparison": comparison(info, utts, dev, out, evaluate_missing, eval_max_new_tokens),
        "latent": latent,
        "bad_samples": info.bad_samples,
        "bad_samples_file": str(info.run_dir / "bad_samples.jsonl"),
        "config": info.record["config"],
        "versions": info.record.get("versions", {}),
        "git_commit": info.record.get("git_commit"),
        "hidden_loss": info.cfg.loss.hidden_loss,
        "ablation": _ablation(info.run_dir, out),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.md").write_text(render_markdown(report, out))
    index = out / "index.html"
    index.write_text(render_html(report, out), encoding="utf-8")
    return index
