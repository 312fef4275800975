"""Render a report dict (see ``build_report``) as Markdown and as one self-contained HTML page.

Both renderers walk the same list of ``Section``s, so the page and report.md show the same text and numbers.
Every text that reaches the HTML is escaped; a figure is referenced only if its file exists beside the page.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from geodistill.ablate.view import comparison_lines, table_rows
from geodistill.students import family_for_init

COMPARE = (  # (eval.json key, label, format); "pct" = a fraction shown as a percentage
    ("params", "parameters", "{:,}"),
    ("disk_mb", "disk size (MB)", "{:.1f}"),
    ("wer", "WER, normalised (%)", "pct"),
    ("wer_raw", "WER, raw (%)", "pct"),
    ("cer", "CER, normalised (%)", "pct"),
    ("rtf", "real-time factor", "{:.4f}"),
    ("tokens_per_second", "tokens / s", "{:.1f}"),
    ("peak_memory_mb", "peak memory (MB)", "{:.0f}"),
)
SETTINGS = ("model", "data", "device", "threads", "batch_size", "beam_size", "language", "dtype")
SETTINGS += ("n_utterances", "n_skipped", "audio_seconds", "peak_memory_kind")
RATIO_KEYS = ("params", "disk_mb", "rtf", "tokens_per_second", "peak_memory_mb")  # shown as student / teacher
CSS = """body{font-family:system-ui,sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0 1.2em}td,th{border:1px solid #ccc;padding:.3em .7em}
td{text-align:right}td:first-child{text-align:left}th{background:#f3f3f3}
img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.9em;color:#555;margin:.3em 0 1.5em}
pre{background:#f7f7f7;padding:1em;overflow:auto}.note{color:#8a5a00}"""


@dataclass
class Section:
    heading: str  # the h2 title
    paragraphs: list[str] = field(default_factory=list)  # plain text, one paragraph each
    tables: list[tuple[tuple[str, ...], list[tuple[str, ...]]]] = field(
        default_factory=list
    )  # (header, rows)
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # (file, title, caption)
    notes: list[str] = field(default_factory=list)  # caveats, shown highlighted
    code: str | None = None  # preformatted block (the config)


def fmt(value, spec: str) -> str:
    """``value`` formatted by ``spec`` ("pct": a fraction as a percentage); "n/a" for None."""
    if value is None:
        return "n/a"
    if spec == "pct":
        return f"{100 * value:.2f}"
    return spec.format(value)


def number(value) -> str:
    """A logged training value with 6 significant digits."""
    return fmt(value, "{:.6g}")


def comparison_rows(cmp: dict) -> list[tuple[str, str, str, str]]:
    """(metric, teacher, student, student vs teacher) for each compared number."""
    t, s = cmp.get("teacher") or {}, cmp.get("student") or {}
    rows = []
    for key, label, spec in COMPARE:
        tv, sv = t.get(key), s.get(key)
        rel = ""
        if tv is not None and sv is not None:
            if spec == "pct":
                rel = f"{100 * (sv - tv):+.2f} pts"
            elif key in RATIO_KEYS and tv:
                rel = f"{sv / tv:.2f}x"
        rows.append((label, fmt(tv, spec), fmt(sv, spec), rel))
    return rows


def settings_rows(cmp: dict) -> list[tuple[str, str, str]]:
    t, s = cmp.get("teacher") or {}, cmp.get("student") or {}
    return [(key, _setting(t.get(key)), _setting(s.get(key))) for key in SETTINGS if key in t or key in s]


def _setting(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else "none" if value is None else str(value)


def training_rows(training: dict) -> list[tuple[str, str]]:
    """(quantity, value) for the steps, the last logged values and the validation scores."""
    rows = [("steps", str(training["steps"]))]
    final = training.get("final") or {}
    rows += [(f"{key} (step {final.get('step')})", number(v)) for key, v in final.items() if key != "step"]
    val = training.get("final_val") or {}
    for key in ("wer", "wer_raw", "cer"):
        if val.get(key) is not None:
            rows.append((f"validation {key} % (step {val.get('step')})", fmt(val[key], "pct")))
    if training.get("best_val_wer") is not None:
        rows.append(("best validation wer %", fmt(training["best_val_wer"], "pct")))
    rows.append(("skipped non-finite steps", str(training["skipped_steps"])))
    return rows


def distance_rows(latent: dict) -> list[tuple[str, ...]]:
    """(side, positions, median before, median after, mean before, mean after), radians."""
    rows = []
    for side, d in latent.get("distances", {}).items():
        b, a = d["before"], d["after"]
        cells = (b["median"], a["median"], b["mean"], a["mean"])
        rows.append((side, str(a["n"]), *(fmt(v, "{:.4f}") for v in cells)))
    return rows


def _initial_student(config: dict) -> str:
    """How the report's "before training" student was made, in its family's words."""
    return family_for_init(config.get("student", {}).get("init", "copy")).initial_student(config)


def comparison_section(report: dict) -> Section:
    cmp = report.get("comparison", {})
    sec = Section("Teacher vs student")
    sec.tables.append((("metric", "teacher", "student", "student vs teacher"), comparison_rows(cmp)))
    sec.tables.append((("setting", "teacher", "student"), settings_rows(cmp)))
    sec.paragraphs += [f"{role} numbers: {source}" for role, source in cmp.get("source", {}).items()]
    sec.notes += [
        f"{role}: not evaluated (no eval-{role}/eval.json in the run folder)"
        for role in ("teacher", "student")
        if cmp.get(role) is None
    ]
    return sec


def training_section(report: dict) -> Section:
    hidden = "geodesic, rad" if report.get("hidden_loss") == "geodesic" else report.get("hidden_loss")
    sec = Section("Training")
    if report.get("training") is not None:
        sec.tables.append((("quantity", "value"), training_rows(report["training"])))
    sec.notes += [f"{m['file']} is missing ({m['what']}): {m['effect']}" for m in report.get("missing", [])]
    sec.paragraphs.append(f"Bad samples: {report['bad_samples']} (lines of {report['bad_samples_file']}).")
    sec.figures.append(
        (
            report.get("training_image"),
            "Training curves",
            "Per logged step: cross-entropy on the reference labels (CTC on their characters for a CTC "
            f"student), KL·T² to the teacher's soft labels (or TAID), the hidden-state loss ({hidden}) per "
            "side, the weighted total; "
            "learning rate, KL weight, TAID t, gradient norm before clipping (red dotted: the "
            "clip), and validation WER / CER in %.",
        )
    )
    return sec


def hidden_section(report: dict) -> Section:
    latent = report.get("latent", {})
    sec = Section("Hidden states: student vs teacher")
    if latent.get("skipped"):
        sec.notes.append(f"hidden-state views skipped: {latent['skipped']}")
        return sec
    where = f"{len(latent.get('utterances', []))} utterances of {latent.get('data')}"
    step = latent.get("student_provenance", {}).get("step")
    saved = f" (saved at step {step})" if step is not None else ""
    sec.paragraphs.append(
        f"States of teacher and student on the same {where}, teacher-forced on the reference transcripts "
        "(decoder: the positions the losses score; encoder: frames covering audio, evenly subsampled). "
        "Student states go through the run's trained projector into the teacher's space, which is what "
        "the geodesic loss compares; teacher states are L2-normalised. "
        f"Student: {latent.get('student_dir')}{saved}."
    )
    sec.paragraphs += [f"{note}." for note in latent.get("sides", {}).values()]
    sec.notes += latent.get("notes", [])
    sec.tables.append(
        (
            ("side", "positions", "median before", "median after", "mean before", "mean after"),
            distance_rows(latent),
        )
    )
    sec.figures.append(
        (
            latent.get("distance_image"),
            "Geodesic distance to the teacher, before and after",
            "Per decoder token / encoder frame: the angle (rad) between the teacher's state and the "
            f"student's projected state. Before: {_initial_student(report.get('config', {}))}, "
            "projector at its start. After: the trained student and projector. Dashed: medians.",
        )
    )
    for method in latent.get("maps", {}).values():
        sec.figures.append(
            (
                method["file"],
                f"Latent map: {method['title']}",
                "Teacher (blue) and trained student (orange) in one joint embedding; grey lines join "
                "the two states of the same utterance and position. " + "; ".join(method["panels"]),
            )
        )
    return sec


def ablation_section(report: dict) -> Section | None:
    """When the run is one cell of a ``geodistill ablate`` grid: the whole ablation's table and verdicts."""
    summary = report.get("ablation")
    if not summary:
        return None

    cell = summary["this_cell"]
    sec = Section("Ablation", tables=[table_rows(summary)])
    sec.paragraphs.append(
        f"This run is the cell {cell['variant']}, seed {cell['seed']} (trial {cell['trial']}) of the"
        f" ablation in {summary['dir']}: {summary['cells']['complete']} of {summary['cells']['total']} cells"
        " finished. "
        "WER normalised, in %; mean ± sample standard deviation over seeds."
    )
    sec.paragraphs += comparison_lines(summary)
    sec.figures.append(("ablation.png", "WER per variant", "Every seed a dot; the bar is mean ± std."))
    return sec


def sections(report: dict, out: Path) -> list[Section]:
    """The report's sections; figures whose file is missing from ``out`` are dropped."""
    config = Section("Configuration", code=yaml.safe_dump(report.get("config", {}), sort_keys=False))
    versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items())
    config.paragraphs.append(f"Versions: {versions}; git commit {report.get('git_commit') or 'unknown'}.")
    secs = [comparison_section(report), training_section(report), hidden_section(report), config]
    ablation = ablation_section(report)
    if ablation is not None:
        secs.insert(2, ablation)
    for sec in secs:
        sec.figures = [f for f in sec.figures if f[0] and (out / f[0]).is_file()]
    return secs


def _title(report: dict) -> tuple[str, str]:
    return (
        f"geodistill report: {report['run_dir']}",
        f"Teacher {report['teacher']}, student {report['student_dir']}, generated {report['generated']}.",
    )


def _md_row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render_markdown(report: dict, out: Path) -> str:
    """report.md: the same sections and numbers as index.html, figures as relative image links."""
    title, subtitle = _title(report)
    lines = [f"# {title}", "", subtitle, ""]
    for sec in sections(report, out):
        lines += [f"## {sec.heading}", ""]
        for header, rows in sec.tables:
            lines += [_md_row(header), _md_row(("---",) * len(header)), *(_md_row(r) for r in rows), ""]
        lines += [line for p in sec.paragraphs for line in (p, "")]
        lines += [line for n in sec.notes for line in (f"> Note: {n}", "")]
        for file, fig_title, caption in sec.figures:
            lines += [f"### {fig_title}", "", f"![{fig_title}]({file})", "", caption, ""]
        if sec.code is not None:
            lines += ["```yaml", sec.code.rstrip(), "```", ""]
    return "\n".join(lines)


def _html_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict, out: Path) -> str:
    """index.html: inline CSS, every text escaped, figures by relative path (only files that exist)."""
    e = html.escape
    title, subtitle = _title(report)
    parts = [f"<h1>{e(title)}</h1>", f"<p>{e(subtitle)}</p>"]
    for sec in sections(report, out):
        parts.append(f"<h2>{e(sec.heading)}</h2>")
        parts += [_html_table(header, rows) for header, rows in sec.tables]
        parts += [f"<p>{e(p)}</p>" for p in sec.paragraphs]
        parts += [f'<p class="note">Note: {e(n)}</p>' for n in sec.notes]
        parts += [
            f'<figure><h3>{e(t)}</h3><img src="{e(f)}" alt="{e(t)}"><figcaption>{e(c)}</figcaption></figure>'
            for f, t, c in sec.figures
        ]
        if sec.code is not None:
            parts.append(f"<pre>{e(sec.code)}</pre>")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )
