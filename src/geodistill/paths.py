"""Where geodistill keeps its per-user cache (converted models, the demo's downloaded sources)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$GEODISTILL_CACHE if set, else $XDG_CACHE_HOME/geodistill (an absolute path, as the XDG spec requires),
    else ~/.cache/geodistill."""
    own = os.environ.get("GEODISTILL_CACHE")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "geodistill"
    return Path.home() / ".cache" / "geodistill"
