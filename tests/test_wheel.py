"""The presets ship in the wheel: built from this checkout, installed into a fresh venv and run from
outside the checkout, ``geodistill demo --help``, ``geodistill presets`` and ``--config NAME`` work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str | Path, cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """(the fresh venv's bin folder, an environment that sees only that venv's geodistill)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy: setuptools writes build/ and egg-info/ beside what it builds
    source.mkdir()
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp / "dist", source, cwd=tmp)
    wheel = next((tmp / "dist").glob("geodistill-*.whl"))
    venv = tmp / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    run(*pip, "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index", wheel, cwd=tmp)
    # torch and the other dependencies come from this interpreter's site-packages: a .pth line adds the
    # folder (its own .pth files, such as an editable geodistill, are not read from there)
    site = Path(
        run(
            venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp
        ).strip()
    )
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return venv / "bin", env


@pytest.mark.slow
def test_the_installed_wheel_ships_the_presets(installed, tmp_path):
    bin_dir, env = installed
    where = run(
        bin_dir / "python", "-c", "import geodistill; print(geodistill.__file__)", cwd=tmp_path, env=env
    )
    assert Path(where.strip()).is_relative_to(bin_dir.parent)  # the wheel's copy, not this checkout
    assert "--config" in run(bin_dir / "geodistill", "demo", "--help", cwd=tmp_path, env=env)
    listed = run(bin_dir / "geodistill", "presets", cwd=tmp_path, env=env)
    assert {line.split()[0] for line in listed.splitlines()} >= {"dynamic-cpu", "layer-drop-cpu", "ctc-cpu"}
    resolved = run(
        bin_dir / "python",
        "-c",
        "from geodistill.config import config_source, load_config\n"
        "from geodistill.demo import PRESET\n"
        "print(config_source(PRESET)); print(load_config(PRESET).student.audio_context)",
        cwd=tmp_path,
        env=env,
    )
    path, context = resolved.splitlines()
    assert Path(path).is_relative_to(bin_dir.parent) and path.endswith("presets/dynamic-cpu.yaml")
    assert context == "dynamic"
