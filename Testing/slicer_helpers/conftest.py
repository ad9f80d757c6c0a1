"""Make ``AutoSegCoreLib`` importable: it ships next to the engine, not inside the installed package."""

from __future__ import annotations

import sys
from pathlib import Path

_CORE = Path(__file__).resolve().parents[2] / "AutoSegCore"
if str(_CORE) not in sys.path:
    sys.path.insert(0, str(_CORE))
