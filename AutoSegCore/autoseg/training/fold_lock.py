"""One training per fold folder: a lock file that says who trains it.

Why: two trainings of one fold (a second click in Slicer, a run left over from a crashed Slicer,
the same command in two terminals) interleave ``events.jsonl`` and overwrite each other's
checkpoints. ``training.lock`` holds the owner's pid, host, start time and command as JSON. It is
released when the run ends (normally, on an error or a stop). A lock whose process is gone is
taken over: a killed run must not block its own resume. "Gone" can only be known on the same host
(the pid is not alive, or it now belongs to a process started later, which Linux tells by the
process start time); a lock from another host is respected and the message says how to remove it.

Creating the lock is atomic (a fully written temporary file is hard-linked to the lock's name, or,
where a file system has no hard links, created exclusively). A stale lock is first renamed aside,
so of two runs that find the same stale lock only one takes it over. Torch-free: the Slicer side
reads locks to show who trains a fold.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from autoseg.errors import AutoSegError
from autoseg.paths import make_folder
from autoseg.training.stop_request import stop_request_path

LOCK_FILE = "training.lock"
# A lock file that cannot be parsed is being written right now, unless it is older than this.
_UNREADABLE_STALE_S = 10.0
_ATTEMPTS = 3
_BEING_WRITTEN = "(being written)"


class FoldLocked(AutoSegError):
    """Another process trains (or validates) this fold."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a fold lock (the content of ``training.lock``)."""

    pid: int
    host: str
    started: float
    command: str
    process_start: str | None = None

    @classmethod
    def for_this_process(cls, command: str) -> LockHolder:
        return cls(os.getpid(), socket.gethostname(), time.time(), command, process_start())

    @classmethod
    def from_json(cls, data: Any) -> LockHolder:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        start = data.get("process_start")
        return cls(
            int(data["pid"]),
            str(data["host"]),
            float(data["started"]),
            str(data.get("command", "")),
            None if start is None else str(start),
        )

    def describe(self) -> str:
        """``pid 123 on host, started 2025-01-31 14:02:11: autoseg train ...``."""
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, started {started}: {self.command}"


def process_start(pid: int | None = None) -> str | None:
    """When process ``pid`` started, as the kernel counts it (Linux; None elsewhere).

    Stored in the lock so that a pid reused by an unrelated process is not mistaken for the owner.
    """
    try:
        stat = Path(f"/proc/{pid or os.getpid()}/stat").read_text(encoding="ascii")
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None  # field 22 of stat; fields[0] is field 3


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this machine (zombies count as ended)."""
    if pid <= 0:  # 0 and -1 address process groups, never one process
        return False
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text(encoding="ascii").rsplit(")", 1)[-1].split()[0] != "Z"
    return True


def _windows_pid_alive(pid: int) -> bool:
    """OpenProcess + GetExitCodeProcess: ``os.kill(pid, 0)`` would *terminate* it on Windows."""
    import ctypes  # noqa: PLC0415 - Windows only

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    query_limited_information, still_active = 0x1000, 259
    handle = kernel32.OpenProcess(query_limited_information, False, pid)
    if not handle:
        return ctypes.get_last_error() == 5  # access denied: it exists
    try:
        code = ctypes.c_ulong()
        ok = kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        return bool(ok) and code.value == still_active
    finally:
        kernel32.CloseHandle(handle)


def holder_gone(holder: LockHolder) -> bool:
    """True when the holder's process is known to have ended; a lock of another host never is."""
    if holder.host != socket.gethostname():
        return False
    if holder.pid <= 0:
        return True  # an unreadable lock left by a crash while it was written
    if holder.pid == os.getpid():
        return True  # this process does not hold it (``FoldLock`` is not re-entrant): left over
    if not pid_alive(holder.pid):
        return True
    start = process_start(holder.pid)
    return holder.process_start is not None and start is not None and start != holder.process_start


def read_lock(folder: str | os.PathLike[str]) -> LockHolder | None:
    """The holder of a fold's lock; None when the fold is not locked."""
    path = Path(folder) / LOCK_FILE
    try:
        return LockHolder.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return _unreadable(path)


def _unreadable(path: Path) -> LockHolder | None:
    """A lock being written right now (young), or the remains of a crash while writing (old)."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    host = socket.gethostname() if age > _UNREADABLE_STALE_S else _BEING_WRITTEN
    return LockHolder(0, host, 0.0, "(unreadable lock file)")


def _create(path: Path, holder: LockHolder) -> bool:
    """Create the lock with its content in one step; False when it exists already."""
    content = json.dumps(asdict(holder), indent=1) + "\n"
    temporary = path.with_name(f".{path.name}.{holder.pid}.tmp")
    temporary.write_text(content, encoding="utf-8")
    try:
        os.link(temporary, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system: exclusive create, then write
        return _create_exclusive(path, content)
    finally:
        temporary.unlink(missing_ok=True)


def _create_exclusive(path: Path, content: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(content)
    return True


def _take_over(path: Path, stale: LockHolder) -> None:
    """Move a stale lock aside; a lock that changed meanwhile (someone took it) is put back."""
    aside = path.with_name(f".{path.name}.stale.{os.getpid()}")
    try:
        path.replace(aside)
    except FileNotFoundError:
        return  # someone else moved it: try again from the start
    moved = read_lock_file(aside)
    if (
        moved is not None
        and stale.pid > 0
        and (moved.pid, moved.started)
        != (
            stale.pid,
            stale.started,
        )
    ):
        aside.replace(path)  # a fresh lock of another run: leave it to its owner
        raise FoldLocked(_locked_message(path, moved))
    aside.unlink(missing_ok=True)


def read_lock_file(path: Path) -> LockHolder | None:
    try:
        return LockHolder.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _locked_message(path: Path, holder: LockHolder) -> str:
    folder = path.parent
    if holder.host == _BEING_WRITTEN:
        return f"{folder}: another run is taking this fold's lock right now; nothing was changed"
    if holder.host == socket.gethostname():
        return (
            f"{folder}: this fold is being trained by another process ({holder.describe()}). "
            f"Fix: wait for it to end or stop it (Cancel in Slicer, Ctrl+C in its terminal, or "
            f"create {stop_request_path(folder)}); nothing was changed"
        )
    return (
        f"{folder}: this fold is locked by a training on another computer ({holder.describe()}). "
        f"Fix: if no training of this fold runs there any more, delete {path} and start again; "
        "nothing was changed"
    )


class FoldLock:
    """The lock on one fold folder, held until ``release()`` (or the end of a ``with``)."""

    def __init__(self, path: Path, holder: LockHolder) -> None:
        self.path = path
        self.holder = holder
        self._held = True

    def release(self) -> None:
        """Delete the lock file if it is still ours (idempotent)."""
        if not self._held:
            return
        self._held = False
        current = read_lock_file(self.path)
        if current is not None and (current.pid, current.started) == (
            self.holder.pid,
            self.holder.started,
        ):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> FoldLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def acquire_fold_lock(folder: str | os.PathLike[str], command: str) -> FoldLock:
    """Lock ``folder`` for this process (the folder is created); ``FoldLocked`` names the holder.

    ``command`` is what the lock tells the next run (e.g. ``autoseg train 4 3d_fullres 0``).
    """
    folder = make_folder(Path(folder), "the fold folder")
    path = folder / LOCK_FILE
    holder = LockHolder.for_this_process(command)
    for _ in range(_ATTEMPTS):
        if _create(path, holder):
            return FoldLock(path, holder)
        current = read_lock(folder)
        if current is None:
            continue  # released meanwhile
        if not holder_gone(current):
            raise FoldLocked(_locked_message(path, current))
        _take_over(path, current)
    raise FoldLocked(
        f"{path}: could not take the lock of this fold (other runs keep taking it). "
        "Fix: make sure only one training of this fold runs, then start again"
    )
