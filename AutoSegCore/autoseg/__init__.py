"""AutoSeg: self-configuring medical image segmentation (the nnU-Net v2 method), for 3D Slicer and the CLI.

Importing ``autoseg`` is cheap: submodules are loaded on first use, so ``import autoseg.plans`` inside
Slicer never pulls in heavy dependencies.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "extract_fingerprint": "autoseg.planning",
    "plan_experiment": "autoseg.planning",
    "preprocess_dataset": "autoseg.preprocessing",
    "verify_dataset": "autoseg.integrity",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'autoseg' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "__version__",
    "extract_fingerprint",
    "plan_experiment",
    "preprocess_dataset",
    "verify_dataset",
]
