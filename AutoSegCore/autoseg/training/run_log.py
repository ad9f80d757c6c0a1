"""Run logs of one training fold: a readable text log and a machine-readable event stream.

``training_log_<YYYY_MM_DD_HH_MM_SS>.txt`` is for people: one new file per start or resume, each
line stamped with the time, optionally echoed to a stream (the console). ``events.jsonl`` is for
programs (the Slicer training module follows it while the run is going): one JSON object per line,
appended across resumes. Every event is written with a single ``os.write`` on a file opened for
appending and then ``fsync``-ed, so a reader never sees half a line and a crash loses at most the
event being written. NaN becomes ``null`` there, so the file is strict JSON.

Expected event fields (the trainer supplies them; only ``event`` and ``time`` are added here):
``start`` fold, configuration, epochs, iterations_per_epoch, resumed_from_epoch, ...;
``epoch`` (see ``RunLog.epoch``); ``checkpoint`` kind, path; ``validation`` summary,
mean_fg_dice; ``stopping`` reason (a stop request was seen; the run is finishing its iteration and
saving); ``stopped`` reason, phase, next_epoch, checkpoint, message; ``end`` status; ``error``
message, kind (``out_of_memory`` when an allocation failed). Epochs count from 0, as in the
history. ``end``, ``stopped`` and ``error`` are final: one of them ends every run.

``event`` may be called from another thread (the stop-request watcher acknowledges from its own);
a lock keeps lines whole. ``mirror`` receives every event as written (``autoseg train --progress
json`` prints them as JSON lines on stdout).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from autoseg.training.history import EpochRecord

Clock = Callable[[], float]
EVENTS_FILE = "events.jsonl"
_FINAL_EVENTS = frozenset({"end", "error", "stopped"})
Mirror = Callable[[dict[str, Any]], None]


def jsonable(value: Any) -> Any:
    """Strict-JSON form: NaN/inf -> None, tuples -> lists, numpy -> Python, paths -> str."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    # numpy and torch scalars or arrays, without importing either; anything else (paths) as text
    return jsonable(value.tolist()) if hasattr(value, "tolist") else str(value)


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _open_text_log(folder: Path, now: float) -> TextIO:
    """A new text log named after the start time; a second start within that second gets ``_2``."""
    stem = "training_log_" + time.strftime("%Y_%m_%d_%H_%M_%S", time.localtime(now))
    for n in range(1, 1000):
        name = f"{stem}.txt" if n == 1 else f"{stem}_{n}.txt"
        try:
            return (folder / name).open("x", encoding="utf-8")
        except FileExistsError:
            continue
    raise FileExistsError(f"too many training logs named {stem}*.txt in {folder}")


def _open_events(path: Path) -> int:
    """Open the event log for appending; end a half line left by a crash so new lines parse."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o644)
    size = path.stat().st_size
    if size:
        with path.open("rb") as file:
            file.seek(size - 1)
            if file.read(1) != b"\n":
                os.write(fd, b"\n")
    return fd


class RunLog:
    """Writes the text log and ``events.jsonl`` of one fold folder; use as a context manager.

    ``clock`` returns ``time.time()``-style seconds; tests inject a fake one. Leaving the ``with``
    block through an exception records an ``error`` event unless ``end``/``error`` was written.
    """

    def __init__(
        self,
        folder: Path,
        *,
        echo: TextIO | None = None,
        clock: Clock = time.time,
        mirror: Mirror | None = None,
    ) -> None:
        self.folder = Path(folder)
        self._mirror = mirror
        self._lock = threading.Lock()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._echo = echo
        self._text = _open_text_log(self.folder, clock())
        self.text_path = Path(self._text.name)
        self.events_path = self.folder / EVENTS_FILE
        try:
            self._events_fd: int | None = _open_events(self.events_path)
        except BaseException:
            self._text.close()
            raise
        self._finished = False

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None and not self._finished and self._events_fd is not None:
            message = f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__
            self.message(f"Training stopped by {message}")
            self.event("error", message=message)
        self.close()

    def message(self, text: str) -> None:
        """A time-stamped line in the text log (and on the echo stream); not an event."""
        if self._text.closed:
            raise ValueError(f"the run log {self.text_path} is closed")
        stamp = datetime.fromtimestamp(self._clock())
        line = f"{stamp:%Y-%m-%d %H:%M:%S.%f}: {text}\n"
        self._text.write(line)
        self._text.flush()
        if self._echo is not None:
            self._echo.write(line)
            self._echo.flush()

    def event(self, name: str, /, **fields: Any) -> None:
        """Append ``{"event": name, "time": now, **fields}`` to ``events.jsonl`` in one write."""
        if "event" in fields:
            raise ValueError("an event's fields cannot contain 'event'")
        record = jsonable({"event": name, "time": self._clock(), **fields})
        data = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            if self._events_fd is None:
                raise ValueError(f"the run log {self.events_path} is closed")
            view = memoryview(data)
            while view:
                view = view[os.write(self._events_fd, view) :]
            os.fsync(self._events_fd)
            self._finished = self._finished or name in _FINAL_EVENTS
        if self._mirror is not None:
            self._mirror(record)

    def start(self, info: Mapping[str, Any]) -> None:
        """The start banner (every setting on its own line) and the ``start`` event."""
        resumed = info.get("resumed_from_epoch")
        title = "Training started" if resumed is None else f"Training resumed at epoch {resumed}"
        self.message("#" * 60)
        self.message(title)
        for key, value in info.items():
            self.message(f"  {key}: {value}")
        self.message("#" * 60)
        self.event("start", **info)

    def epoch(
        self,
        record: EpochRecord,
        *,
        epochs: int,
        new_best: bool,
        eta_seconds: float | None,
    ) -> None:
        """Text lines and the ``epoch`` event for one finished epoch (``epochs`` = planned total)."""
        self.message(f"Epoch {record.epoch}")
        self.message(f"Current learning rate: {record.lr:.5g}")
        self.message(f"train_loss {_fmt(record.train_loss)}")
        self.message(f"val_loss {_fmt(record.val_loss)}")
        self.message(f"Pseudo dice [{', '.join(_fmt(d) for d in record.pseudo_dice)}]")
        self.message(f"Epoch time: {record.epoch_time:.2f} s")
        if eta_seconds is not None and math.isfinite(eta_seconds):
            self.message(f"Estimated time left: {_duration(eta_seconds)}")
        if new_best:
            self.message(f"New best EMA pseudo Dice: {_fmt(record.ema_fg_dice)}")
        self.event(
            "epoch",
            epoch=record.epoch,
            epochs=epochs,
            train_loss=record.train_loss,
            val_loss=record.val_loss,
            pseudo_dice=record.pseudo_dice,
            mean_fg_dice=record.mean_fg_dice,
            ema_fg_dice=record.ema_fg_dice,
            lr=record.lr,
            epoch_time=record.epoch_time,
            eta_seconds=eta_seconds,
            new_best=new_best,
        )

    def close(self) -> None:
        """Close both files; calling it again does nothing."""
        with self._lock:
            if self._events_fd is not None:
                os.close(self._events_fd)
                self._events_fd = None
        self._text.close()
