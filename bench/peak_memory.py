"""Peak resident memory, as every benchmark reports it.

``ru_maxrss`` is in KiB on Linux and in bytes on macOS; Windows has no ``resource`` module, so the
figure is NaN there rather than an import error.
"""

from __future__ import annotations

import sys

try:
    import resource
except ImportError:  # Windows
    resource = None


def peak_rss_mb(children: bool = False) -> float:
    """Peak RSS of this process, or of its largest finished child with ``children=True``, in MB."""
    if resource is None:
        return float("nan")
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024**2
    return resource.getrusage(who).ru_maxrss * scale
