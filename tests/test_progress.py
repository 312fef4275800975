"""Progress bars and -q / -v: a bar only on a terminal and not with -q; -q / -v before or after a command."""

from __future__ import annotations

import io
import logging

import pytest

from geodistill.cli import main
from geodistill.progress import LOGGER, bars_on, progress
from tests.conftest import make_tiny_whisper
from tests.train.conftest import write_manifest


class Terminal(io.StringIO):
    """What stderr is when a person watches: a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_levels():
    """main() sets the geodistill loggers' levels (an earlier test's -q too): start unset, put them back."""
    loggers = [logging.getLogger(name) for name in ("geodistill", LOGGER)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.NOTSET)
    yield
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)


def test_no_bar_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with progress(range(3), desc="work") as bar:
        assert bar.disable and list(bar) == [0, 1, 2]  # still iterates, draws nothing
    assert not bars_on()


def test_a_bar_on_a_terminal_unless_quiet(monkeypatch):
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    for _ in progress(range(3), desc="work"):
        pass
    assert "work: 100%" in screen.getvalue()
    logging.getLogger(LOGGER).setLevel(logging.WARNING)  # what -q sets
    assert not bars_on() and progress(range(3), desc="quiet").disable
    logging.getLogger(LOGGER).setLevel(logging.NOTSET)
    assert bars_on() and progress(desc="rank 1", show=False).disable  # the caller's own condition


def test_dash_q_and_dash_v_go_before_or_after_any_command(monkeypatch, capsys):
    for argv, level in (
        (["-q", "presets"], logging.WARNING),
        (["presets", "-q"], logging.WARNING),
        (["-v", "presets"], logging.DEBUG),
        (["presets"], logging.INFO),
        (["-q", "presets", "--verbose"], logging.DEBUG),  # the last one given wins
    ):
        assert main(argv) == 0
        assert logging.getLogger("geodistill").level == logging.getLogger(LOGGER).level == level, argv
    assert "dynamic-cpu" in capsys.readouterr().out


@pytest.mark.parametrize("stderr_kind", ["terminal", "terminal -q", "pipe"])
def test_the_data_probe_draws_a_bar_only_on_a_terminal_without_q(stderr_kind, monkeypatch, tmp_path, capsys):
    stderr = Terminal() if stderr_kind.startswith("terminal") else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    flags = ["-q"] if stderr_kind.endswith("-q") else []
    assert main([*flags, "data", "scan", str(write_manifest(tmp_path, 3, 0, "c"))]) == 0
    assert "utterances: 3" in capsys.readouterr().out
    drawn = stderr.getvalue()
    if stderr_kind == "terminal":
        assert "probe audio:   0%" in drawn and "0/3" in drawn
    else:
        assert drawn == ""  # no bar, and nothing else either


def test_evaluate_draws_a_decode_bar_only_on_a_terminal(monkeypatch, tmp_path, tiny_processor):
    from geodistill.evaluate.run import evaluate

    model = tmp_path / "model"
    make_tiny_whisper(d_model=32, layers=1).save_pretrained(model)
    tiny_processor.save_pretrained(model)
    manifest = write_manifest(tmp_path, 3, 0, "c")
    for stderr in (Terminal(), io.StringIO()):
        monkeypatch.setattr("sys.stderr", stderr)
        result = evaluate(model, manifest, device="cpu", max_new_tokens=2, warmup=False)
        assert result["n_utterances"] == 3
        drawn = stderr.getvalue()
        # the bar's count at the last redraw depends on timing (tqdm redraws at most every 0.1 s)
        assert ("decode: " in drawn and "/3 [" in drawn) if stderr.isatty() else "decode" not in drawn
