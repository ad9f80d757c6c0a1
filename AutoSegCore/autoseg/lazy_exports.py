"""Package names loaded on first use (PEP 562), so importing a light submodule stays light.

Used by packages whose ``__init__`` re-exports heavy modules: ``autoseg.planning.presets`` or
``autoseg.preprocessing.storage`` can then be read (e.g. in Slicer's process) without importing
scipy through the package's other modules.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module path) when asked."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    return __getattr__
