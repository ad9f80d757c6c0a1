"""How long the process tests wait for a child: a deadline, never a duration they assert.

A loaded machine may take seconds to start a Python, so waits end as soon as the event happens
and fail only when it never does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PATIENCE = 60.0


def wait_for(condition: Callable[[], object], timeout: float = PATIENCE) -> bool:
    """True as soon as ``condition()`` is true; False if it is still false after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())
