"""Run the AutoSeg engine as a child process without blocking Slicer's user interface.

Why a child process: torch must never load in Slicer's own process (DLL clashes, memory that is
never returned, a crash that takes the scene with it). Why this module and not
``slicer.util.launchConsoleProcess``: that one starts no process group, so cancelling kills only
the launcher and leaves data-loader workers running; and its blocking reader freezes the UI.

Design: stdout and stderr are read on daemon threads that only put ``ProcessEvent`` objects into
a ``queue.Queue``; the Slicer module drains it with ``poll_events()`` from a QTimer on the main
thread, so nothing touches Qt from a worker thread. This module is Qt-free and testable with
plain pytest. It is not part of the engine package, so it may read ``os.environ``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

EventKind = Literal["json", "text", "stderr", "exit"]
IS_WINDOWS = sys.platform == "win32"
# How long the exit event waits for the readers after the process ended: a grandchild that
# inherited the pipes and outlives its parent must not hold the exit event back for ever.
_READER_GRACE_S = 2.0


@dataclass(frozen=True)
class ProcessEvent:
    """One thing the child did.

    ``kind`` is ``"json"`` (payload: the dict of a JSON-object stdout line), ``"text"`` (any other
    stdout line, without its newline), ``"stderr"`` (a stderr line) or ``"exit"`` (payload: the
    return code; always the last event of a process, negative on POSIX when killed by a signal).
    """

    kind: EventKind
    payload: Any


def engine_command(python_executable: str | os.PathLike[str], args: Sequence[str]) -> list[str]:
    """``[python, "-m", "autoseg", *args]``; in Slicer ``python`` is the PythonSlicer launcher."""
    return [os.fspath(python_executable), "-m", "autoseg", *(str(a) for a in args)]


def default_python(executable: str | None = None) -> str:
    """PythonSlicer next to ``executable`` (default ``sys.executable``) if present, else it.

    In Slicer the engine must run in Slicer's Python with Slicer's environment, which the
    PythonSlicer launcher sets up; in plain Python (tests) the interpreter itself is used.
    """
    executable = executable or sys.executable
    folder = Path(executable).parent
    for name in ("PythonSlicer.exe", "PythonSlicer") if os.name == "nt" else ("PythonSlicer",):
        if (folder / name).is_file():
            return str(folder / name)
    return executable


def engine_environment(
    overrides: Mapping[str, str | None] | None = None,
    *,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with ``overrides`` applied (``None`` removes).

    Output is forced unbuffered and UTF-8 so progress lines arrive as they are printed and
    non-ASCII paths survive non-UTF-8 Windows locales (a known failure of other extensions);
    the folder of the bundled engine is put first on PYTHONPATH (see ``engine_search_path``).
    """
    env = dict(os.environ if base is None else base)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    engine_folder = engine_search_path()
    if engine_folder is not None:
        paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        if engine_folder not in paths:
            env["PYTHONPATH"] = os.pathsep.join([engine_folder, *paths])
    return env


def engine_search_path() -> str | None:
    """The folder that holds the ``autoseg`` package this process would import, if any.

    Slicer adds an extension's scripted-module folder to its own ``sys.path`` at start-up, but a
    child ``PythonSlicer`` only gets the launcher's paths; without this folder on PYTHONPATH,
    ``PythonSlicer -m autoseg`` would not find the bundled engine. Found without importing it.
    """
    spec = importlib.util.find_spec("autoseg")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


def parse_stdout_line(line: str) -> ProcessEvent:
    """A JSON-object line becomes a ``"json"`` event; anything else stays ``"text"``."""
    stripped = line.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            return ProcessEvent("json", obj)
    return ProcessEvent("text", line.rstrip("\r\n"))


class EngineProcess:
    """A started child process whose output arrives as ``ProcessEvent`` objects in a queue.

    Use ``EngineProcess.for_engine(python, args)`` for ``autoseg`` commands, or the constructor
    with any command (tests, helper scripts). The process starts in the constructor in its own
    process group (POSIX session / Windows process group) so that ``cancel()`` can end the whole
    tree. Events of one stream keep their order; stdout and stderr are read independently, so
    their relative order is not guaranteed. The ``"exit"`` event is always last.
    """

    def __init__(
        self,
        command: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.command = [os.fspath(c) for c in command]
        self._events: queue.Queue[ProcessEvent] = queue.Queue()
        self._exit_seen = False
        self._popen = subprocess.Popen(  # an argument list, never a shell
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env) if env is not None else engine_environment(),
            cwd=cwd,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **_new_group_kwargs(),
        )
        self._readers = [
            _start_thread(self._read, self._popen.stdout, False),
            _start_thread(self._read, self._popen.stderr, True),
        ]
        _start_thread(self._report_exit)

    @classmethod
    def for_engine(
        cls,
        python_executable: str | os.PathLike[str],
        args: Sequence[str],
        *,
        env_overrides: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> EngineProcess:
        """Start ``python -m autoseg *args`` with ``os.environ`` plus ``env_overrides``."""
        env = engine_environment(env_overrides)
        return cls(engine_command(python_executable, args), env=env, cwd=cwd)

    @property
    def pid(self) -> int:
        """The child's process id (also its process-group id on POSIX)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or ``None`` while the process runs."""
        return self._popen.poll()

    @property
    def is_running(self) -> bool:
        """True until the child process has ended (its grandchildren are not considered)."""
        return self._popen.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the child; its return code, or ``None`` when ``timeout`` passed first."""
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def poll_events(self) -> list[ProcessEvent]:
        """Every event that arrived since the last call, in arrival order; never blocks."""
        events: list[ProcessEvent] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return events
            events.append(event)
            self._exit_seen = self._exit_seen or event.kind == "exit"

    def collect_until_exit(self, timeout: float | None = None) -> list[ProcessEvent]:
        """Block until the ``"exit"`` event (or ``timeout``) and return all events meanwhile.

        For console use and headless tests; the Slicer UI uses ``poll_events`` from a timer.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        events: list[ProcessEvent] = []
        while not self._exit_seen:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            try:
                event = self._events.get(timeout=remaining)
            except queue.Empty:
                break
            events.append(event)
            self._exit_seen = event.kind == "exit"
        return events

    def cancel(self, timeout: float = 5.0) -> int | None:
        """End the whole process tree; returns the child's return code.

        POSIX: SIGTERM to the process group (training then saves its latest checkpoint), then
        SIGKILL to the group after ``timeout`` seconds, or at once when the child has ended, so
        that no grandchild (data-loader worker) survives. Windows: CTRL_BREAK to the group, then
        ``taskkill /T /F`` on the tree after ``timeout``. Safe to call when already ended.
        """
        if IS_WINDOWS:
            _cancel_windows(self._popen, timeout)
        else:
            _cancel_posix(self._popen, timeout)
        return self.wait(timeout)

    def _read(self, stream: IO[str], is_stderr: bool) -> None:
        with contextlib.suppress(ValueError, OSError), stream:  # closed under us: stop reading
            for line in iter(stream.readline, ""):
                if is_stderr:
                    self._events.put(ProcessEvent("stderr", line.rstrip("\r\n")))
                else:
                    self._events.put(parse_stdout_line(line))

    def _report_exit(self) -> None:
        code = self._popen.wait()
        for reader in self._readers:
            reader.join(_READER_GRACE_S)
        self._events.put(ProcessEvent("exit", code))


def follow_jsonl(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """New complete JSON-object lines of a growing file, and the byte offset to resume from.

    Used to follow ``fold_k/events.jsonl`` while training writes it: a trailing partial line
    (being written right now) is left for the next call. Blank, malformed or non-object lines
    are skipped. A missing file gives no events; a file shorter than ``offset`` (rewritten) is
    read again from the start.
    """
    file = Path(path)
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        return [], offset
    start = 0 if size < offset else offset
    with file.open("rb") as handle:
        handle.seek(start)
        data = handle.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], start
    events: list[dict[str, Any]] = []
    for raw in data[: end + 1].splitlines():
        try:
            obj = json.loads(raw.decode("utf-8", errors="replace"))
        except ValueError:
            continue
        if isinstance(obj, dict):
            events.append(obj)
    return events, start + end + 1


def _new_group_kwargs() -> dict[str, Any]:
    """Popen arguments that put the child at the head of its own process group."""
    if IS_WINDOWS:
        flags = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        return {"creationflags": flags}
    return {"start_new_session": True}


def _start_thread(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def _cancel_posix(popen: subprocess.Popen[str], timeout: float) -> None:
    # The child is its session's leader, so its pid is the group id. Sending to the group also
    # reaches grandchildren; after the leader exits, the SIGKILL clears any that linger.
    _signal_group(popen.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout)
    _signal_group(popen.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _cancel_windows(popen: subprocess.Popen[str], timeout: float) -> None:
    if popen.poll() is None:
        with contextlib.suppress(OSError, ValueError):
            popen.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined]
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout)
    subprocess.run(  # a finished tree only makes it fail
        ["taskkill", "/T", "/F", "/PID", str(popen.pid)],
        capture_output=True,
        check=False,
        **_new_group_kwargs(),
    )
