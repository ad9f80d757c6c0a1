"""Make the Slicer-side libraries importable: they ship next to the engine, not inside its package."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
for _folder in ("AutoSegCore", "AutoSegTrain", "AutoSegPredict"):
    if str(_ROOT / _folder) not in sys.path:
        sys.path.insert(0, str(_ROOT / _folder))
# the tests' own helpers (patience.py): --import-mode=importlib does not put this folder on the path
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
