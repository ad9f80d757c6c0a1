"""Stopping a training cooperatively: a stop-request file in the fold folder, or a signal.

Why a file and not only signals: in Slicer the engine runs as ``PythonSlicer -m autoseg``, and
PythonSlicer (CTKAppLauncher) starts the real Python as its own child and forwards no signals; on
Windows a CTRL_BREAK reaches no process that shares no console with the sender. A file in the fold
folder reaches the engine through any launcher on every OS. It can also be written by a Slicer
session that did not start the run (after a restart: the fold lock names the run) and by a user
in another terminal (``touch fold_0/STOP_REQUEST``). Why not a line on stdin: a pipe belongs to the
one process that started the run, and launchers differ in whether they pass stdin on.

Protocol: the engine deletes a leftover file right after it took the fold lock (a request meant
for an earlier run must not stop this one); a helper thread then looks for the file every
``POLL_S`` seconds and acknowledges it at once (a ``stopping`` event); the loop finishes the
current iteration, writes ``checkpoint_latest.pth``, writes a ``stopped`` event and the command
exits 0. Because a request written before that start-up clean-up is deleted with it, a runner
re-writes the file until the process has ended (see ``AutoSegCoreLib.process_runner``).

SIGINT/SIGTERM (and SIGBREAK on Windows) set the same flag while the loop runs; the command then
exits 130 as before. This module does not import torch: the Slicer side uses its names.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

STOP_REQUEST_FILE = "STOP_REQUEST"
POLL_S = 0.5
FILE_REASON = "stop request"

OnRequest = Callable[[str], None]


class TrainingStopped(Exception):
    """A stop request was honoured: the latest checkpoint is written; this is not an error.

    The command line ends with exit code 0 and ``message`` (what was kept, how to resume).
    """


def stop_request_path(folder: str | os.PathLike[str]) -> Path:
    """Where a stop request for the training in ``folder`` (a fold folder) is written."""
    return Path(folder) / STOP_REQUEST_FILE


def write_stop_request(folder: str | os.PathLike[str], requested_by: str = "") -> Path:
    """Ask the training in ``folder`` to stop; the content only documents who asked and when."""
    path = stop_request_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    note = {"requested_by": requested_by, "pid": os.getpid(), "time": time.time()}
    path.write_text(json.dumps(note) + "\n", encoding="utf-8")
    return path


def clear_stop_request(folder: str | os.PathLike[str]) -> bool:
    """Delete a stop request; True when there was one."""
    try:
        stop_request_path(folder).unlink()
    except FileNotFoundError:
        return False
    return True


def _stop_signals() -> list[signal.Signals]:
    names = ("SIGINT", "SIGTERM", "SIGBREAK")  # SIGBREAK: Windows' CTRL_BREAK_EVENT
    return [getattr(signal, name) for name in names if hasattr(signal, name)]


class StopRequest:
    """One flag for "stop after this iteration", set by a signal or by the stop-request file.

    Call it (or ``is_set()``) to poll it; ``reason`` says what set it first (``"stop request"``
    for the file, else the signal's name). ``folder=None`` watches no file (signals only).
    """

    def __init__(self, folder: str | os.PathLike[str] | None = None, poll_s: float = POLL_S):
        self._path = None if folder is None else stop_request_path(folder)
        self._poll_s = poll_s
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._interrupt_main = False
        # Set by the main thread's SIGINT handler inside ``interrupting`` (a plain attribute: a
        # handler must not take ``_lock``, which the main thread may hold when it runs).
        self._interrupt_delivered = False
        self.reason: str | None = None

    def __call__(self) -> bool:
        return self.is_set()

    def is_set(self) -> bool:
        """True once a stop was requested; also looks for the file (so the check is exact)."""
        if not self._event.is_set() and self._path is not None and self._path.exists():
            self.request(FILE_REASON)
        return self._event.is_set()

    @property
    def by_file(self) -> bool:
        """True when the stop-request file (not a signal) asked to stop."""
        return self.reason == FILE_REASON

    def request(self, reason: str) -> None:
        """Set the flag (the first reason is kept)."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            self._event.set()

    @contextlib.contextmanager
    def signals(self) -> Iterator[StopRequest]:
        """Let SIGINT/SIGTERM/SIGBREAK set the flag inside the block (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.getsignal(sig) for sig in _stop_signals()}
        for sig in previous:
            signal.signal(sig, lambda number, _frame: self.request(signal.Signals(number).name))
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextlib.contextmanager
    def watching(self, on_request: OnRequest | None = None) -> Iterator[StopRequest]:
        """Look for the file on a helper thread inside the block; ``on_request(reason)`` is called
        once, from that thread, as soon as the flag is set (the acknowledgement)."""
        done = threading.Event()
        thread = threading.Thread(
            target=self._watch, args=(done, on_request), name="stop-request", daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            done.set()
            thread.join()

    @contextlib.contextmanager
    def interrupting(self) -> Iterator[None]:
        """Inside the block a file request raises KeyboardInterrupt in the main thread: for work
        that polls no flag (the final validation). ``by_file`` then tells it from a Ctrl+C.

        In the main thread the block owns SIGINT: its handler raises KeyboardInterrupt, as
        Python's default one does, and notes that the interrupt arrived; the watcher repeats the
        interrupt until then. So neither a SIGINT handler set by someone else (with SIGINT ignored
        or at its default, ``_thread.interrupt_main`` does nothing) nor native code in the main
        thread that takes the pending interrupt for itself (``PyOS_InterruptOccurred``) leaves the
        work running.
        """
        owns_sigint = threading.current_thread() is threading.main_thread()
        previous = signal.getsignal(signal.SIGINT) if owns_sigint else None
        if owns_sigint:
            signal.signal(signal.SIGINT, self._raise_interrupt)
        self._interrupt_delivered = False
        with self._lock:
            self._interrupt_main = True
        try:
            yield
        finally:
            with self._lock:
                self._interrupt_main = False
            if owns_sigint:
                # None: the previous handler was not set from Python; Python's default stands in
                restored = previous if previous is not None else signal.default_int_handler
                signal.signal(signal.SIGINT, restored)

    def _raise_interrupt(self, _number: int, _frame: object) -> None:
        self._interrupt_delivered = True
        raise KeyboardInterrupt

    def _watch(self, done: threading.Event, on_request: OnRequest | None) -> None:
        acknowledged = False
        while not done.wait(self._poll_s):
            if not self.is_set():
                continue
            if not acknowledged:
                acknowledged = True
                if on_request is not None:
                    on_request(self.reason or FILE_REASON)
            with self._lock:
                if self._interrupt_main and self.by_file and not self._interrupt_delivered:
                    _thread.interrupt_main()
