"""Render a geodistill report in headless Chromium, check every image loaded, save a compact screenshot.

    python scripts/screenshot_report.py runs/demo/run/report/index.html --out docs/report-screenshot.png

Needs Debian's ``chromium`` (apt-get install chromium). The check loads a copy of the page (``<base>``
pointing at the report folder) with a small script that lists every <img> whose naturalWidth is 0 after
load, and reads that list back from ``--dump-dom``. The screenshot is reduced to a 256-colour PNG and
scaled down until it is under ``--max-bytes``.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
PROBE = """<script>window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute("src"));
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-broken", JSON.stringify(broken));
});</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("error: chromium not found (apt-get install chromium)")


def run_chromium(args: list[str], profile: Path) -> str:
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        sys.exit(f"error: chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def check_images(index: Path, work: Path) -> tuple[int, list[str]]:
    """(number of <img>, srcs that did not load) of ``index`` as Chromium renders it."""
    page = index.read_text(encoding="utf-8")
    base = f'<base href="{index.parent.resolve().as_uri()}/">'
    probe = work / "probe.html"
    probe.write_text(page.replace("<head>", "<head>" + base, 1).replace("</body>", PROBE + "</body>", 1))
    dom = run_chromium(["--virtual-time-budget=10000", "--dump-dom", probe.as_uri()], work / "profile")
    images = re.search(r'data-images="(\d+)"', dom)
    broken = re.search(r'data-broken="([^"]*)"', dom)
    if images is None or broken is None:
        sys.exit("error: the probe script did not run (no data-images attribute in the dumped DOM)")
    return int(images.group(1)), json.loads(broken.group(1).replace("&quot;", '"'))


def compact_png(raw: Path, out: Path, max_bytes: int) -> tuple[int, int, int]:
    """Save ``raw`` as a 256-colour PNG at ``out``, scaled down until it fits ``max_bytes``; (w, h, bytes)."""
    with Image.open(raw) as img:
        img = img.convert("RGB")
    scale = 1.0
    while True:
        size = (round(img.width * scale), round(img.height * scale))
        small = img.resize(size, Image.LANCZOS) if scale < 1 else img
        buf = io.BytesIO()
        small.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buf, "PNG", optimize=True)
        if buf.tell() <= max_bytes or scale < 0.3:
            break
        scale *= 0.85
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    return size[0], size[1], buf.tell()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("index", type=Path, help="a report's index.html (or its run folder)")
    p.add_argument("--out", type=Path, default=Path("docs/report-screenshot.png"))
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=4000)
    p.add_argument("--max-bytes", type=int, default=1_000_000)
    a = p.parse_args(argv)
    index = a.index / "report" / "index.html" if a.index.is_dir() else a.index
    if not index.is_file():
        sys.exit(f"error: {index}: no such report page")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        n_images, broken = check_images(index, work)
        if n_images == 0 or broken:
            sys.exit(f"error: {index}: {n_images} images, not loaded: {broken}")
        raw = work / "shot.png"
        run_chromium(
            [f"--window-size={a.width},{a.height}", f"--screenshot={raw}", index.resolve().as_uri()],
            work / "profile",
        )
        w, h, size = compact_png(raw, a.out, a.max_bytes)
    print(f"{index}: {n_images} images, all loaded; screenshot {a.out} ({w}x{h}, {size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
