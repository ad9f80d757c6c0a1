"""Ending a child's whole process tree, and the Windows flags every child of the Slicer side gets.

Why the whole tree: the engine's child may be a launcher (PythonSlicer) whose own child is the real
Python, which again has data-loader workers. On POSIX the child leads its own session, so its pid
is the group id of all of them: a cancel signals the group and waits for every member, not only
the launcher (which exits at once), before it kills what is left. On Windows the tree is ended with
``taskkill /T``. Qt-free and torch-free.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

IS_WINDOWS = sys.platform == "win32"
# How often a cancel looks whether the tree has ended.
POLL_S = 0.1
# Windows process-creation flags (named here so that other platforms can test the arguments).
CREATE_NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0x08000000)
CREATE_NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)


def windowless(flags: int = 0) -> dict[str, Any]:
    """Popen/run keyword arguments that open no console window on Windows (with ``flags``).

    Every child of the Slicer side (engine runs, device probes, nvidia-smi, taskkill) uses them:
    a console program started from the GUI otherwise flashes a black window. Empty elsewhere.
    """
    return {"creationflags": CREATE_NO_WINDOW | flags} if IS_WINDOWS else {}


def new_group_kwargs() -> dict[str, Any]:
    """Popen arguments that put the child at the head of its own process group."""
    if IS_WINDOWS:
        return windowless(CREATE_NEW_PROCESS_GROUP)
    return {"start_new_session": True}


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies waiting to be reaped do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text(encoding="ascii").rsplit(")", 1)[-1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
                return True
    return False


def _wait_for_group(popen: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        popen.poll()  # reap the direct child, or it stays in the group as a zombie
        if not group_alive(popen.pid):
            return
        time.sleep(POLL_S)


def _cancel_posix(popen: subprocess.Popen[str], timeout: float) -> None:
    # The child is its session's leader, so its pid is the group id. Sending to the group also
    # reaches grandchildren (the real Python behind a launcher, data-loader workers); the wait is
    # for all of them, then SIGKILL clears any that linger.
    if timeout > 0 and group_alive(popen.pid):
        _signal_group(popen.pid, signal.SIGTERM)
        _wait_for_group(popen, timeout)
    _signal_group(popen.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _cancel_windows(popen: subprocess.Popen[str], timeout: float) -> None:
    if popen.poll() is None and timeout > 0:
        with contextlib.suppress(OSError, ValueError):
            popen.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout)
    subprocess.run(  # a finished tree only makes it fail
        ["taskkill", "/T", "/F", "/PID", str(popen.pid)],
        capture_output=True,
        check=False,
        **windowless(),
    )


def cancel_tree(popen: subprocess.Popen[str], grace: float) -> None:
    """Signal the tree (SIGTERM / CTRL_BREAK), give it ``grace`` seconds, then kill what is left;
    ``grace`` 0 kills at once (what is left after the engine stopped by itself)."""
    if IS_WINDOWS:
        _cancel_windows(popen, grace)
    else:
        _cancel_posix(popen, grace)
