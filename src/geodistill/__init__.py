"""geodistill: distil OpenAI Whisper into a compact student (CE + KL + geodesic hidden-state losses).

The Python API (``geodistill.api``; README "Python API")::

    from geodistill import transcribe, evaluate, distil, export, load

``import geodistill`` stays light: the API's module (torch, transformers) is imported when a name is
first used.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["__version__", "distil", "evaluate", "export", "load", "transcribe"]
API = ("transcribe", "evaluate", "distil", "export", "load")
SUBPACKAGES = ("evaluate", "export")  # API names that are also subpackages (CallablePackage)

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ below imports them on use
    from geodistill.api import distil, evaluate, export, load, transcribe


class CallablePackage(ModuleType):
    """``geodistill.evaluate`` and ``geodistill.export``: subpackages that run the API function of their
    name when called (SciPy made ``scipy.fft`` callable the same way).

    Those two API names are also subpackages, and importing a subpackage sets it as an attribute of its
    parent: a plain function of that name would be replaced by the module as soon as anything imported
    it. Making the subpackage itself callable keeps one object under each name, so ``from geodistill
    import evaluate``, ``import geodistill.evaluate.run as run`` and ``geodistill.evaluate.run`` all work
    in any import order.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _api(self.__name__.rpartition(".")[2])(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:  # what inspect.signature() and help tools show
        return inspect.signature(_api(self.__name__.rpartition(".")[2]))


def _api(name: str) -> Any:
    from geodistill import api  # noqa: PLC0415 -- on first use: `import geodistill` stays light

    return getattr(api, name)


class _Package(ModuleType):
    """This package: the API's names imported on first use, its two subpackage names made callable."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in SUBPACKAGES and isinstance(value, ModuleType):  # the import system binding it
            value.__class__ = CallablePackage
        super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        if name in SUBPACKAGES:  # not imported yet: importing binds it (through __setattr__, callable)
            return importlib.import_module(f"{__name__}.{name}")
        if name in API:
            return _api(name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _Package
