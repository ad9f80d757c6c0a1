"""Run a training plan's engine steps as child processes and report live per-fold progress.

Why non-blocking: the Train module calls ``TrainingRun.tick()`` from a QTimer on Slicer's main
thread, so a tick only starts processes whose dependencies are done, drains their event queues
and reads the new lines of each running fold's ``events.jsonl``; it never waits.

Cancelling asks each training to stop through its fold's stop-request file (from a helper thread,
see ``EngineProcess.cancel``): the engine acknowledges at once (the step shows "stopping, saving
checkpoint"), finishes its iteration, writes ``checkpoint_latest.pth`` and exits 0. This works
through PythonSlicer, which forwards no signals, and on Windows. Only a run that has not ended
after ``CANCEL_TIMEOUT_S`` gets signals and then is killed with its process group, so no
data-loader worker survives. A training stopped from elsewhere (another Slicer, a user's
``STOP_REQUEST``) ends the run as cancelled, not as done. A failure shows the engine's own error
(e.g. out of memory, with its fix) rather than an exit code the launcher may have changed.
Qt-free and torch-free: plain pytest runs it with real child processes.

``TrainingRequest``, ``EngineStep`` and ``plan_steps`` (what to run) live in ``training_plan``
and are re-exported here.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from autoseg.training.run_log import EVENTS_FILE
from AutoSegCoreLib.process_runner import (
    SIGNAL_GRACE_S,
    EngineProcess,
    engine_command,
    engine_environment,
    follow_jsonl,
)
from AutoSegTrainLib.fold_status import (
    PROGRESS_PNG,
    FoldProgress,
    fold_progress,
    read_fold_progress,
)
from AutoSegTrainLib.training_plan import (
    EngineStep,
    FoldKey,
    TrainingRequest,
    plan_steps,
    preprocessing_done,
    step_keys,
)

__all__ = [
    "EngineStep",
    "PlanProgress",
    "RunSnapshot",
    "StepSnapshot",
    "TrainingRequest",
    "TrainingRun",
    "plan_steps",
    "preprocessing_done",
]

StepState = Literal["waiting", "running", "done", "failed", "cancelled"]
CommandBuilder = Callable[[str, Sequence[str]], list[str]]
# Lines kept per step: enough for a traceback's end and the engine's one-line error.
TAIL_LINES = 20
# Lines of engine output waiting for the panel's log box (it takes them every tick); beyond this
# the oldest are dropped, so a run nobody looks at cannot grow without bound.
LOG_LINES = 5000
# How long a training gets after a stop request to finish its iteration (minutes on a CPU for
# a large patch), write checkpoint_latest.pth and exit before signals and the kill follow.
CANCEL_TIMEOUT_S = 120.0
_ENDED = frozenset({"done", "failed", "cancelled"})


@dataclass(frozen=True)
class PlanProgress:
    """The latest ``--progress json`` event of planning: ``done`` of ``total`` in ``stage``."""

    stage: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        """0..1 for a progress bar."""
        return min(self.done / self.total, 1.0) if self.total > 0 else 0.0


@dataclass(frozen=True)
class StepSnapshot:
    """One step as the module shows it.

    Train steps carry ``fold_progress`` (from events.jsonl; before the engine's first event it
    holds what the fold folder said at the start, phase ``"starting"``); the planning step
    carries ``plan_progress``. ``gpu`` is the CUDA device the step runs on, if any.
    """

    key: str
    label: str
    state: StepState
    fold: FoldKey | None = None
    gpu: int | None = None
    fold_progress: FoldProgress | None = None
    plan_progress: PlanProgress | None = None
    last_line: str | None = None
    returncode: int | None = None

    def text(self) -> str:
        """``label: state/progress`` in one line."""
        detail: str = self.state
        if self.state == "running" and self.fold_progress is not None:
            detail = self.fold_progress.text()
        elif self.state == "running" and self.plan_progress is not None:
            plan = self.plan_progress
            detail = f"{plan.stage} {plan.done}/{plan.total}"
        gpu = f" (GPU {self.gpu})" if self.gpu is not None else ""
        return f"{self.label}{gpu}: {detail}"


@dataclass(frozen=True)
class RunSnapshot:
    """Every step's state after a tick, and one line for the module's status label."""

    steps: tuple[StepSnapshot, ...]
    status: str
    finished: bool
    failed_message: str | None = None

    def step(self, key: str) -> StepSnapshot:
        """The step with this key (KeyError when there is none)."""
        for step in self.steps:
            if step.key == key:
                return step
        raise KeyError(key)

    @property
    def running(self) -> tuple[StepSnapshot, ...]:
        """The steps running now."""
        return tuple(s for s in self.steps if s.state == "running")


@dataclass
class _Slot:
    """The mutable run-time state of one step (only the main thread changes it)."""

    step: EngineStep
    state: StepState = "waiting"
    process: EngineProcess | None = None
    gpu: int | None = None
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    output: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    offset: int = 0
    progress: FoldProgress | None = None
    plan_progress: PlanProgress | None = None
    returncode: int | None = None
    stop_requested: bool = False
    error_message: str | None = None  # the engine's last JSON ``error`` event on stdout
    # The thread ending this step's process tree; the step ends only after it (it removes a
    # left-over STOP_REQUEST and kills strays of the group once the child has exited).
    canceller: threading.Thread | None = None
    exited: bool = False

    def snapshot(self) -> StepSnapshot:
        return StepSnapshot(
            key=self.step.key,
            label=self.step.label,
            state=self.state,
            fold=self.step.fold,
            gpu=self.gpu,
            fold_progress=self.progress,
            plan_progress=self.plan_progress,
            last_line=self.output[-1] if self.output else None,
            returncode=self.returncode,
        )


class TrainingRun:
    """Runs ``steps`` (from ``plan_steps``) in order of their dependencies.

    ``gpus``: with two or more ids, up to one step per GPU runs at a time and each train step
    gets ``CUDA_VISIBLE_DEVICES=<id>``; with one id, steps run one after another on it; empty,
    one after another. ``env_overrides`` are added to this process's environment for every child
    (``None`` removes a variable), e.g. the data folders' ``AUTOSEG_*`` variables.
    ``command_builder(python, args)`` makes the command line (default ``python -m autoseg
    *args``; tests pass a small script instead). A failed step stops the run:
    nothing new starts, the other running steps are cancelled and ``failed_message`` keeps the
    step's last stderr lines (its last output lines when it wrote nothing to stderr, as
    ``autoseg verify`` does with the problems it lists).
    """

    def __init__(
        self,
        steps: Sequence[EngineStep],
        *,
        python: str | os.PathLike[str],
        env_overrides: Mapping[str, str | None] | None = None,
        gpus: tuple[int, ...] = (),
        command_builder: CommandBuilder = engine_command,
    ) -> None:
        step_keys(steps)  # unique keys, dependencies on earlier steps only
        self._slots = [_Slot(step) for step in steps]
        self._python = os.fspath(python)
        self._env_overrides = dict(env_overrides or {})
        self._free_gpus = list(gpus)
        self._capacity = len(gpus) if len(gpus) >= 2 else 1
        self._build = command_builder
        self._stopping = False
        self._cancelled = False
        self._failed_message: str | None = None
        self._log: deque[str] = deque(maxlen=LOG_LINES)

    @property
    def is_finished(self) -> bool:
        """True when no step runs or waits any more (all done, or the run stopped)."""
        return all(slot.state in _ENDED for slot in self._slots)

    @property
    def failed_message(self) -> str | None:
        """Which step failed, its exit code and its last stderr lines; None without a failure."""
        return self._failed_message

    @property
    def cancelled(self) -> bool:
        """True after ``cancel()``."""
        return self._cancelled

    def tick(self) -> RunSnapshot:
        """Drain the running steps, start the ready ones, and return the state; never blocks."""
        for slot in self._slots:
            if slot.state == "running":
                try:
                    self._drain(slot)
                except OSError as error:  # e.g. events.jsonl became unreadable: stop, don't loop
                    self._fail_unfollowable(slot, error)
        if self._stopping:
            self._cancel_waiting()
        else:
            self._start_ready()
        return self.snapshot()

    def cancel(self, timeout: float = CANCEL_TIMEOUT_S, *, block: bool = False) -> None:
        """Stop the run: waiting steps are cancelled; running trainings are asked to stop (they
        save and exit), other steps and trainings still running after ``timeout`` s get
        signals, then the kill (from helper threads, so the call returns at once). Later ticks
        report them ``"cancelled"`` when they have exited; ``block=True`` ticks until then
        (scripts, tests, module clean-up)."""
        self._cancelled = True
        self._stop_all(timeout)
        self._cancel_waiting()
        if block:
            # the request, the signals' grace, then the readers' grace
            deadline = time.monotonic() + timeout + min(timeout, SIGNAL_GRACE_S) + 10.0
            while not self.is_finished and time.monotonic() < deadline:
                self.tick()
                time.sleep(0.05)

    def take_log(self) -> list[str]:
        """The engine's output lines since the last call (``[step] line``), for the log box.

        Text and stderr lines of every step, and the engine's JSON errors; JSON progress lines
        are left out (the table shows them).
        """
        lines = list(self._log)
        self._log.clear()
        return lines

    def output_lines(self, key: str) -> list[str]:
        """The last lines a step printed (e.g. the summary of ``autoseg verify``)."""
        for slot in self._slots:
            if slot.step.key == key:
                return list(slot.output)
        raise KeyError(key)

    def snapshot(self) -> RunSnapshot:
        """The state as of the last tick (no processes are touched)."""
        steps = tuple(slot.snapshot() for slot in self._slots)
        finished = self.is_finished
        return RunSnapshot(steps, self._status(steps, finished), finished, self._failed_message)

    def _status(self, steps: tuple[StepSnapshot, ...], finished: bool) -> str:
        done = sum(step.state == "done" for step in steps)
        if finished and self._failed_message is not None:
            return f"Failed: {self._failed_message.splitlines()[0]}"
        if finished and self._cancelled:
            return f"Cancelled ({done} of {len(steps)} steps done)"
        if finished:
            return f"Finished: {done} steps done" if steps else "Nothing to do: all done"
        if self._stopping:
            running = [step.text() for step in steps if step.state == "running"]
            return "Stopping: " + ("; ".join(running) or "waiting for the steps to exit")
        running = [step.text() for step in steps if step.state == "running"]
        return f"Step {done + 1} of {len(steps)}: " + "; ".join(running or ["starting"])

    def _start_ready(self) -> None:
        done = {slot.step.key for slot in self._slots if slot.state == "done"}
        for slot in self._slots:
            if sum(s.state == "running" for s in self._slots) >= self._capacity:
                return
            if slot.state == "waiting" and all(key in done for key in slot.step.depends_on):
                self._start(slot)
                if self._stopping:  # it could not start
                    return

    def _start(self, slot: _Slot) -> None:
        if slot.step.fold is not None and self._free_gpus:
            slot.gpu = self._free_gpus.pop(0)
        overrides = dict(self._env_overrides)
        if slot.gpu is not None:
            overrides["CUDA_VISIBLE_DEVICES"] = str(slot.gpu)
        command = self._build(self._python, list(slot.step.args))
        try:
            if slot.step.fold_dir is not None:
                progress, slot.offset = read_fold_progress(slot.step.fold_dir)
                slot.progress = replace(progress, phase="starting", message=None)
            env = engine_environment(overrides)
            slot.process = EngineProcess(command, env=env, stop_folder=slot.step.fold_dir)
        except OSError as error:
            slot.stderr.append(f"cannot start {command[0]}: {error}")
            self._finish(slot, None)
            return
        slot.state = "running"

    def _fail_unfollowable(self, slot: _Slot, error: OSError) -> None:
        """A step whose progress cannot be read any more: end it and fail the run."""
        slot.stderr.append(f"cannot follow its progress: {error}")
        if slot.process is not None:
            slot.canceller = _cancel_in_background(slot.process, CANCEL_TIMEOUT_S)
        self._finish(slot, -1)

    def _drain(self, slot: _Slot) -> None:
        assert slot.process is not None
        for event in slot.process.poll_events():
            if event.kind == "json":
                self._on_json(slot, event.payload)
                if event.payload.get("event") == "error":
                    self._log.append(f"[{slot.step.label}] error: {event.payload.get('message')}")
            elif event.kind == "text":
                slot.output.append(event.payload)
                self._log.append(f"[{slot.step.label}] {event.payload}")
            elif event.kind == "stderr":
                slot.stderr.append(event.payload)
                self._log.append(f"[{slot.step.label}] {event.payload}")
            else:  # "exit", always the last event
                slot.exited, slot.returncode = True, event.payload
                self._log.append(f"[{slot.step.label}] exit code {event.payload}")
        self._follow(slot)  # after the exit too: the last events.jsonl lines are in by then
        if slot.exited and (slot.canceller is None or not slot.canceller.is_alive()):
            self._finish(slot, slot.returncode)

    @staticmethod
    def _on_json(slot: _Slot, payload: dict[str, Any]) -> None:
        if payload.get("event") == "error" and payload.get("message"):
            slot.error_message = str(payload["message"])
        if payload.get("event") == "progress":
            try:
                done, total = int(payload["done"]), int(payload["total"])
            except (KeyError, TypeError, ValueError):
                return
            slot.plan_progress = PlanProgress(str(payload.get("stage", "")), done, total)

    @staticmethod
    def _follow(slot: _Slot) -> None:
        folder = slot.step.fold_dir
        if folder is None or slot.progress is None:
            return
        events, slot.offset = follow_jsonl(folder / EVENTS_FILE, slot.offset)
        if events:
            progress = fold_progress(events, slot.progress)
            png = folder / PROGRESS_PNG
            slot.progress = replace(progress, progress_png=png if png.is_file() else None)

    def _finish(self, slot: _Slot, code: int | None) -> None:
        if slot.gpu is not None:
            self._free_gpus.append(slot.gpu)
            self._free_gpus.sort()
        phase = slot.progress.phase if slot.progress is not None else None
        # A cooperative stop exits 0 too: only a step that was not stopped is done.
        stopped = phase == "interrupted" or (slot.stop_requested and phase != "finished")
        if code == 0 and not stopped:
            slot.state = "done"
            if slot.progress is not None and phase != "finished":
                # e.g. a --val step: validation writes no events, yet the fold is finished now
                slot.progress = replace(slot.progress, phase="finished")
        elif slot.stop_requested:
            slot.state = "cancelled"
        elif code == 0:  # stopped from elsewhere (a user's STOP_REQUEST, another Slicer)
            slot.state = "cancelled"
            self._cancelled = True
            self._stop_all(CANCEL_TIMEOUT_S)
        else:
            slot.state = "failed"
            if self._failed_message is None:
                self._failed_message = _failure(slot, code)
            self._stop_all(CANCEL_TIMEOUT_S)

    def _stop_all(self, timeout: float) -> None:
        self._stopping = True
        for slot in self._slots:
            if slot.state == "running" and not slot.stop_requested and slot.process is not None:
                slot.stop_requested = True
                slot.canceller = _cancel_in_background(slot.process, timeout)

    def _cancel_waiting(self) -> None:
        for slot in self._slots:
            if slot.state == "waiting":
                slot.state = "cancelled"


def _failure(slot: _Slot, code: int | None) -> str:
    """What the module shows for a failed step: the engine's own error first (e.g. out of memory
    and its fix), then its last output lines; the exit code only when the engine said nothing."""
    tail = "\n".join(slot.stderr or slot.output) or "(no output)"
    progress = slot.progress
    engine = slot.error_message
    if engine is None and progress is not None and progress.phase == "error":
        engine = progress.message or None
    if engine is not None:
        return f"{slot.step.label} failed: {engine}\n{tail}"
    how = "could not start" if code is None else f"failed (exit code {code})"
    return f"{slot.step.label} {how}:\n{tail}"


def _cancel_in_background(process: EngineProcess, timeout: float) -> threading.Thread:
    """End ``process``'s tree from a helper thread: the grace period must not block a tick."""
    thread = threading.Thread(target=process.cancel, args=(timeout,), daemon=True)
    thread.start()
    return thread
