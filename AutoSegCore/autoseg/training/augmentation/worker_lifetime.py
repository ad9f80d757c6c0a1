"""Augmentation workers end when the training process ends, however it ended.

Why: batchgenerators' workers loop until an abort event that only a living parent sets, and wait on
a full queue that nobody reads any more. After a SIGKILL or the kernel's out-of-memory killer they
would run, holding their memory, for ever (seen: two orphans with 1.3 GB 35 minutes after a kill).

Two guards, both armed in the worker by ``end_with_parent`` before it produces anything:

- Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker the moment its parent
  ends. The kernel ties this to the parent *thread* that started the worker; the streams start
  their workers from the training's main thread, which lives as long as the process.
- Everywhere: a daemon thread checks every ``CHECK_S`` seconds that the parent still lives (on
  POSIX ``os.getppid()`` changes when a process is orphaned; multiprocessing's parent sentinel is a
  pipe that closes, or on Windows a process handle that signals, when the parent ends) and ends
  the worker with ``os._exit``: an orphan has nothing to save and nobody to hand batches to.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from typing import Any

CHECK_S = 1.0
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_EXIT_ORPHANED = 1


def set_parent_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent ends; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes  # noqa: PLC0415 - Linux only

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0)
    return False


def parent_alive(parent_pid: int) -> bool:
    """Whether the process that started this one (``parent_pid``) still runs."""
    if os.getppid() != parent_pid:  # POSIX: reparented to init or a subreaper
        return False
    parent = multiprocessing.parent_process()
    return parent is None or parent.is_alive()


def _watch(parent_pid: int, check_s: float) -> None:
    while parent_alive(parent_pid):
        threading.Event().wait(check_s)
    os._exit(_EXIT_ORPHANED)


def end_with_parent(parent_pid: int, check_s: float = CHECK_S) -> None:
    """Arm both guards in this (worker) process; returns at once."""
    set_parent_death_signal()
    if not parent_alive(parent_pid):  # the parent died before the guard was set
        os._exit(_EXIT_ORPHANED)
    watcher = threading.Thread(
        target=_watch, args=(parent_pid, check_s), name="parent-watch", daemon=True
    )
    watcher.start()


class ParentBoundSource:
    """A batch source for worker processes: the worker's first call arms ``end_with_parent``.

    batchgenerators calls ``set_thread_id`` once in each worker before the first batch, so the
    guards are armed in every worker, with the fork and the spawn start method alike (this object
    is what the worker receives).
    """

    def __init__(self, source: Any, check_s: float = CHECK_S) -> None:
        self._source = source
        self._parent_pid = os.getpid()
        self._check_s = check_s

    def set_thread_id(self, thread_id: int) -> None:
        end_with_parent(self._parent_pid, self._check_s)
        self._source.set_thread_id(thread_id)

    def __iter__(self) -> ParentBoundSource:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._source)  # type: ignore[no-any-return]
