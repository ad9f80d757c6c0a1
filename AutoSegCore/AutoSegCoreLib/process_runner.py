"""Run the AutoSeg engine as a child process without blocking Slicer's user interface.

Why a child process: torch must never load in Slicer's own process (DLL clashes, memory that is
never returned, a crash that takes the scene with it). Why this module and not
``slicer.util.launchConsoleProcess``: that one starts no process group, so cancelling kills only
the launcher and leaves data-loader workers running; and its blocking reader freezes the UI.

Design: stdout and stderr are read on daemon threads that only put ``ProcessEvent`` objects into
a ``queue.Queue``; the Slicer module drains it with ``poll_events()`` from a QTimer on the main
thread, so nothing touches Qt from a worker thread. This module is Qt-free and testable with
plain pytest. It is not part of the engine package, so it may read ``os.environ``.

Cancelling asks before it forces. In Slicer the child is PythonSlicer (CTKAppLauncher), which
starts the real Python as its own child, forwards no signals and exits at once on SIGTERM; and on
Windows a CTRL_BREAK reaches no process that shares no console. So a process started with a
``stop_folder`` (a training's fold folder) is first asked through the engine's stop-request file
(``autoseg.training.stop_request``): it finishes its iteration, saves and exits 0. Only when it has
not ended after the timeout are signals sent (POSIX: SIGTERM to the process group, then SIGKILL;
Windows: CTRL_BREAK, then ``taskkill /T /F``). On POSIX the wait is for the whole process group,
not only the launcher, so the real Python is never killed while it writes its checkpoint.

Every child opens no console window on Windows (``windowless()``, used by every subprocess call of
the Slicer side).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from autoseg.training.stop_request import (
    clear_stop_request,
    stop_request_path,
    write_stop_request,
)
from AutoSegCoreLib.process_tree import POLL_S, cancel_tree, new_group_kwargs

EventKind = Literal["json", "text", "stderr", "exit"]
# How long the exit event waits for the readers after the process ended: a grandchild that
# inherited the pipes and outlives its parent must not hold the exit event back for ever.
_READER_GRACE_S = 2.0
# After a stop request timed out: how long SIGTERM/CTRL_BREAK may take before the tree is killed.
SIGNAL_GRACE_S = 10.0


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
        stop_folder: str | os.PathLike[str] | None = None,
    ) -> None:
        self.command = [os.fspath(c) for c in command]
        self.stop_folder = None if stop_folder is None else Path(stop_folder)
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
            **new_group_kwargs(),
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
        stop_folder: str | os.PathLike[str] | None = None,
    ) -> EngineProcess:
        """Start ``python -m autoseg *args`` with ``os.environ`` plus ``env_overrides``.

        ``stop_folder``: for ``autoseg train`` of one fold, its fold folder: ``cancel()`` then
        asks the engine to stop there before it sends signals.
        """
        env = engine_environment(env_overrides)
        command = engine_command(python_executable, args)
        return cls(command, env=env, cwd=cwd, stop_folder=stop_folder)

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

    def request_stop(self) -> bool:
        """Ask the engine to stop through its stop-request file; never blocks.

        False when this process has no ``stop_folder``, has ended, or the folder does not exist
        yet (the engine creates it; ``cancel`` keeps asking until then). The engine acknowledges
        with a ``stopping`` event in its events.jsonl.
        """
        if self.stop_folder is None or not self.is_running or not self.stop_folder.is_dir():
            return False
        with contextlib.suppress(OSError):  # e.g. the drive went away: the signals still work
            write_stop_request(self.stop_folder, f"AutoSeg (pid {os.getpid()})")
            return True
        return False

    def cancel(self, timeout: float = 5.0) -> int | None:
        """End the whole process tree; returns the child's return code.

        With a ``stop_folder`` the engine is first asked to stop (see the module docstring) and
        given ``timeout`` seconds to save and exit; signals follow only if it did not, with
        ``SIGNAL_GRACE_S`` (at most ``timeout``) before the tree is killed. Without one, signals
        come at once and the kill after ``timeout``. Safe to call when already ended.
        """
        grace = timeout
        if self.stop_folder is not None and self.is_running:
            stopped = self._stop_cooperatively(timeout)
            grace = 0.0 if stopped else min(timeout, SIGNAL_GRACE_S)
        cancel_tree(self._popen, grace)
        code = self.wait(max(timeout, 1.0))
        if self.stop_folder is not None and code is not None:
            # a request re-written after the engine honoured it must not wait for the next run
            with contextlib.suppress(OSError):
                clear_stop_request(self.stop_folder)
        return code

    def _stop_cooperatively(self, timeout: float) -> bool:
        """Ask, and keep asking while waiting: the engine deletes a request that it finds when it
        starts (one left from an earlier run must not stop it), which may be this one.

        True once the child has ended: a launcher ends only after the engine it started, so
        what is left of the group then are strays that ``cancel_tree`` kills at once.
        """
        assert self.stop_folder is not None
        request = stop_request_path(self.stop_folder)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._popen.poll() is not None:
                return True
            if not request.exists():
                self.request_stop()
            time.sleep(POLL_S)
        return self._popen.poll() is not None

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


def failure_message(events: Sequence[ProcessEvent]) -> str | None:
    """The message of the engine's last ``{"event": "error"}`` line (``--progress json``), e.g.
    out of memory with its fix: more telling than an exit code, which the launcher may change."""
    for event in reversed(events):
        if event.kind == "json" and event.payload.get("event") == "error":
            message = event.payload.get("message")
            return str(message) if message else None
    return None


def _start_thread(target: Any, *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread
