"""The report of a real (tiny) run: valid images, only existing files referenced, numbers from the run."""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geodistill.data import load_spec, text_tokens
from geodistill.errors import GeodistillError
from geodistill.report import build_report
from geodistill.report.html import render_html
from tests.report.conftest import N_REPORT

FIGURES = {
    "training_curves.png",
    "geodesic_distances.png",
    "latent_pca.png",
    "latent_tsne.png",
    "latent_umap.png",
}


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append(value)


def html_refs(page: Path) -> list[str]:
    parser = _Refs()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.refs


def test_every_figure_is_a_real_png(built_report):
    out = built_report.parent
    assert FIGURES <= {p.name for p in out.glob("*.png")}
    for name in FIGURES:
        path = out / name
        assert path.stat().st_size > 10_000, name
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert 500 <= img.width <= 3000 and 300 <= img.height <= 3000, (name, img.size)
            pixels = np.asarray(img.convert("L"), dtype=float)
        assert pixels.std() > 5, f"{name} is (nearly) blank"


def test_html_and_markdown_reference_only_files_that_exist(built_report):
    out = built_report.parent
    refs = html_refs(built_report)
    assert set(refs) == FIGURES  # every figure shown, nothing else linked (no external resources)
    for ref in refs:
        assert not Path(ref).is_absolute() and (out / ref).is_file(), ref
    md = (out / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in md


def test_numbers_come_from_the_history_and_the_eval_files(tiny_run, built_report):
    out = built_report.parent
    report = json.loads((out / "report.json").read_text())
    history = json.loads((tiny_run / "training_history.json").read_text())
    assert report["training"]["final"] == history["train"][-1]
    assert report["training"]["final_val"] == history["val"][-1]
    assert report["training"]["best_val_wer"] == min(v["wer"] for v in history["val"])
    assert report["training"]["steps"] == 4 and len(history["val"]) == 2
    evals = {
        role: json.loads((tiny_run / f"eval-{role}" / "eval.json").read_text())
        for role in ("teacher", "student")
    }
    assert report["comparison"]["teacher"] == evals["teacher"]
    assert report["comparison"]["student"] == evals["student"]

    md, page = (out / "report.md").read_text(), built_report.read_text()
    t, s = evals["teacher"], evals["student"]
    wer_row = ("WER, normalised (%)", f"{100 * t['wer']:.2f}", f"{100 * s['wer']:.2f}")
    assert "| " + " | ".join(wer_row) in md
    assert "".join(f"<td>{c}</td>" for c in wer_row) in page
    assert f"| parameters | {t['params']:,} | {s['params']:,} |" in md
    assert s["params"] < t["params"]  # one decoder layer of two was dropped
    last = history["train"][-1]
    assert f"| total (step 4) | {last['total']:.6g} |" in md
    assert f"| validation wer % (step 4) | {100 * history['val'][-1]['wer']:.2f} |" in md
    assert report["bad_samples"] == 0 and "Bad samples: 0" in md


def test_hidden_state_views_cover_the_requested_utterances(built_report, tiny_data, tiny_processor):
    latent = json.loads((built_report.parent / "report.json").read_text())["latent"]
    utts = load_spec(str(tiny_data[0]))[:N_REPORT]
    assert latent["utterances"] == [u.id for u in utts]
    # Decoder positions = the label tokens (text + eot) of those utterances, as the losses score them.
    n_tokens = sum(len(text_tokens(tiny_processor, u.text)) for u in utts)
    dec, enc = latent["distances"]["decoder"], latent["distances"]["encoder"]
    assert dec["before"]["n"] == dec["after"]["n"] == n_tokens
    # The student's encoder is the teacher's frozen copy and the projector starts as the identity.
    assert enc["before"]["median"] < 1e-6 and enc["before"]["mean"] < 1e-6
    assert dec["before"]["median"] > 0.01  # one decoder layer of two differs from the teacher
    assert dec["after"]["median"] != dec["before"]["median"]  # training moved the decoder / projector
    assert set(latent["maps"]) == {"pca", "tsne", "umap"}
    assert all(len(m["panels"]) == 4 for m in latent["maps"].values())
    assert "projector" in latent["sides"]["decoder"] and "identity" in latent["sides"]["decoder"]


def test_default_data_and_missing_evaluations(tiny_run, tmp_path):
    """Without data the run's validation data is used; a missing eval-student/ is evaluated by the report."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval-student", "report"))
    (run / "report").mkdir()
    (run / "report" / "stale.png").write_bytes(b"old")
    index = build_report(run, n=32, device="cpu", eval_max_new_tokens=8)
    report = json.loads((index.parent / "report.json").read_text())
    val = load_spec(report["config"]["data"]["val"])
    assert report["latent"]["utterances"] == [u.id for u in val]
    assert not (index.parent / "stale.png").exists()
    written = json.loads((index.parent / "eval-student" / "eval.json").read_text())
    assert report["comparison"]["student"] == written and written["n_utterances"] == len(val)
    assert "run by the report" in report["comparison"]["source"]["student"]
    assert report["comparison"]["source"]["teacher"] == str(run / "eval-teacher" / "eval.json")
    # 2 utterances give 4 pooled points: too few for t-SNE/UMAP, said in the panel instead of a fake map.
    assert any("too few for t-SNE" in p for p in report["latent"]["maps"]["tsne"]["panels"])
    refs = html_refs(index)
    assert refs and all((index.parent / r).is_file() for r in refs)


def test_text_from_the_run_is_escaped(built_report):
    report = json.loads((built_report.parent / "report.json").read_text())
    report["teacher"] = "<script>alert(1)</script>"
    report["config"]["data"]["train"] = "a&b<i>"
    page = render_html(report, built_report.parent)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "a&amp;b&lt;i&gt;" in page


def test_bad_run_folders_give_one_line_errors(tmp_path, tiny_run):
    with pytest.raises(GeodistillError, match="not a folder"):
        build_report(tmp_path / "nope")
    with pytest.raises(GeodistillError, match=r"training_config\.json: missing"):
        build_report(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(
        tiny_run, broken, ignore=shutil.ignore_patterns("best", "adapter_final", "eval-*", "report")
    )
    with pytest.raises(GeodistillError, match="no saved student"):
        build_report(broken)
    (broken / "training_history.json").write_text("{not json")
    with pytest.raises(GeodistillError, match=r"training_history\.json: unreadable"):
        build_report(broken)
    with pytest.raises(GeodistillError, match="n must be >= 1"):
        build_report(tiny_run, n=0)
