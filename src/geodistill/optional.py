"""Optional dependencies: imported where needed, with a one-line hint at the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from geodistill.errors import GeodistillError


class MissingDependencyError(GeodistillError):
    """An optional package that a feature needs is not installed (or does not import)."""


def require(module: str, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module``, or raise MissingDependencyError naming the pip extra that installs it.

    ``purpose`` says what needs it ("reading a saved datasets dataset"); ``package`` is the pip name when it
    differs from the module's top-level name.
    """
    top = module.split(".")[0]
    pip_name = package or top
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if getattr(exc, "name", None) in (module, top):
            raise MissingDependencyError(
                f"{purpose} needs the '{pip_name}' package: pip install 'geodistill[{extra}]'"
            ) from exc
        raise MissingDependencyError(
            f"{purpose}: '{pip_name}' is installed but does not import ({exc}); "
            f"reinstall it: pip install --force-reinstall 'geodistill[{extra}]'"
        ) from exc
