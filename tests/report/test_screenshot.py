"""The report renders in headless Chromium with every image loaded (skipped where Chromium is absent)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_report.py"

pytestmark = pytest.mark.skipif(
    not any(shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")),
    reason="headless Chromium not installed (apt-get install chromium)",
)


def _script():
    return load_script(SCRIPT)


def test_chromium_loads_every_image_and_the_screenshot_is_small(built_report, tmp_path):
    shot = _script()
    n_images, broken = shot.check_images(built_report, tmp_path)
    assert n_images == 5 and broken == []
    out = tmp_path / "shot.png"
    assert shot.main([str(built_report), "--out", str(out), "--height", "2500"]) == 0
    assert 20_000 < out.stat().st_size < 1_000_000
    with Image.open(out) as img:
        assert img.size == (1280, 2500)
        assert len(img.convert("RGB").getcolors(1 << 16) or []) > 10  # not a blank page

    # A figure deleted after the page was written is caught, not photographed.
    copy = tmp_path / "report"
    shutil.copytree(built_report.parent, copy)
    (copy / "latent_umap.png").unlink()
    n_images, broken = shot.check_images(copy / "index.html", tmp_path)
    assert n_images == 5 and broken == ["latent_umap.png"]
    with pytest.raises(SystemExit, match="not loaded"):
        shot.main([str(copy / "index.html"), "--out", str(tmp_path / "never.png")])
