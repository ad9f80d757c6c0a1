"""Progress reporting that works for a terminal and for the Slicer modules.

Long stages call a ``ProgressCallback`` with ``(stage, done, total)``. The command line plugs in a
text bar for people or JSON lines (``--progress json``) that the Slicer modules read from the child
process; engine code never prints progress itself.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

ProgressCallback = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """A callback that ignores progress (library use, tests)."""


class TextProgressBar:
    """A one-line progress bar with rate and remaining time, redrawn in place on a terminal.

    Redraws are limited to ten per second; when the stream is not a terminal (a log file, CI) only
    the final line of each stage is written, so logs stay readable.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self._stream = stream or sys.stderr
        self._width = width
        self._started: dict[str, float] = {}
        self._last_draw = 0.0
        self._interactive = bool(getattr(self._stream, "isatty", lambda: False)())

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        start = self._started.setdefault(stage, now)
        finished = done >= total
        if not finished and (not self._interactive or now - self._last_draw < 0.1):
            return
        self._last_draw = now
        elapsed = max(now - start, 1e-9)
        fraction = done / total if total else 1.0
        filled = int(self._width * fraction)
        rate = done / elapsed
        remaining = (total - done) / rate if rate > 0 else 0.0
        bar = "#" * filled + "-" * (self._width - filled)
        # A finished stage reports its duration: a rate from one call would be meaningless.
        tail = f"in {elapsed:.1f} s" if finished else f"{rate:.1f}/s ETA {remaining:.0f}s"
        line = f"\r{stage}: [{bar}] {done}/{total} {tail}"
        if not self._interactive:
            line = line.lstrip("\r")
        self._stream.write(line + ("\n" if finished else ""))
        self._stream.flush()


def write_json_event(record: Mapping[str, Any], stream: TextIO | None = None) -> None:
    """One JSON object on one line of ``stream`` (default stdout), flushed at once.

    Besides ``progress``, commands report ``error`` (with ``kind``, e.g. ``out_of_memory``) and
    training also ``stopping``/``stopped`` on this channel, so a program that reads the child's
    output learns why it ended without guessing from the exit code.
    """
    target = stream or sys.stdout
    target.write(json.dumps(dict(record), allow_nan=False, default=str) + "\n")
    target.flush()


class JsonLinesProgress:
    """One JSON object per line: ``{"event": "progress", "stage": ..., "done": k, "total": n}``."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def __call__(self, stage: str, done: int, total: int) -> None:
        event = {"event": "progress", "stage": stage, "done": done, "total": total}
        write_json_event(event, self._stream)
