"""The stop flag: the stop-request file, its acknowledgement, signals, interrupting the main thread."""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from autoseg.training import stop_request as stop_request_module
from autoseg.training.stop_request import (
    FILE_REASON,
    STOP_REQUEST_FILE,
    StopRequest,
    clear_stop_request,
    stop_request_path,
    write_stop_request,
)

WAIT_S = 20.0  # generous: the watcher polls every few milliseconds in these tests


def test_the_file_sets_the_flag_and_says_who_asked(tmp_path) -> None:
    stop = StopRequest(tmp_path)
    assert not stop()
    path = write_stop_request(tmp_path / "fold_0", requested_by="test")
    assert path == stop_request_path(tmp_path / "fold_0") == tmp_path / "fold_0" / STOP_REQUEST_FILE
    assert json.loads(path.read_text())["requested_by"] == "test"
    write_stop_request(tmp_path)
    assert stop()
    assert stop.by_file
    assert stop.reason == FILE_REASON
    assert clear_stop_request(tmp_path)
    assert not clear_stop_request(tmp_path)
    assert stop()  # once set, the flag stays set


def test_the_first_reason_is_kept(tmp_path) -> None:
    stop = StopRequest(tmp_path)
    stop.request("SIGTERM")
    write_stop_request(tmp_path)
    assert stop()
    assert stop.reason == "SIGTERM"
    assert not stop.by_file


def test_without_a_folder_only_requests_set_it(tmp_path) -> None:
    stop = StopRequest(None)
    write_stop_request(tmp_path)
    assert not stop()


def _wait_for(condition) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_the_watcher_acknowledges_once_from_its_thread(tmp_path) -> None:
    stop = StopRequest(tmp_path, poll_s=0.01)
    seen: list[tuple[str, str]] = []
    with stop.watching(lambda reason: seen.append((reason, threading.current_thread().name))):
        time.sleep(0.05)
        assert seen == []
        write_stop_request(tmp_path)
        _wait_for(lambda: seen)
        time.sleep(0.05)
    assert seen == [(FILE_REASON, "stop-request")]
    assert all(t.name != "stop-request" for t in threading.enumerate())  # joined at the end


def _interrupted_by_a_file_request(stop: StopRequest, folder) -> bool:
    """Whether a file request interrupts a block that polls nothing (inside ``watching``)."""

    def long_computation() -> None:
        with stop.interrupting():
            write_stop_request(folder)
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                time.sleep(0.01)

    try:
        with stop.watching():
            long_computation()
    except KeyboardInterrupt:
        return True
    return False


def test_a_file_request_interrupts_work_that_polls_nothing(tmp_path) -> None:
    stop = StopRequest(tmp_path, poll_s=0.01)
    assert _interrupted_by_a_file_request(stop, tmp_path)
    assert stop.by_file


@pytest.mark.parametrize("handler", [signal.SIG_IGN, signal.SIG_DFL])
def test_a_sigint_handler_set_by_others_does_not_lose_the_interrupt(tmp_path, handler) -> None:
    """With SIGINT ignored or at its default, ``_thread.interrupt_main`` alone does nothing; the
    block owns SIGINT while it runs and gives the handler back afterwards."""
    previous = signal.signal(signal.SIGINT, handler)
    try:
        assert _interrupted_by_a_file_request(StopRequest(tmp_path, poll_s=0.01), tmp_path)
        assert signal.getsignal(signal.SIGINT) == handler
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_taken_by_someone_else_is_repeated(tmp_path, monkeypatch) -> None:
    """Native code in the main thread may take a pending interrupt for itself: the watcher
    repeats it until the block's handler has it."""
    calls: list[int] = []
    real = stop_request_module._thread.interrupt_main

    def first_one_lost() -> None:
        calls.append(1)
        if len(calls) > 1:
            real()

    monkeypatch.setattr(stop_request_module._thread, "interrupt_main", first_one_lost)
    assert _interrupted_by_a_file_request(StopRequest(tmp_path, poll_s=0.01), tmp_path)
    assert len(calls) >= 2


def test_outside_interrupting_a_request_only_sets_the_flag(tmp_path) -> None:
    stop = StopRequest(tmp_path, poll_s=0.01)
    acknowledged = threading.Event()
    with stop.watching(lambda _reason: acknowledged.set()):
        write_stop_request(tmp_path)
        assert acknowledged.wait(WAIT_S)
        time.sleep(0.05)  # a KeyboardInterrupt would arrive here
    assert stop()


def test_signals_set_the_flag_and_handlers_are_restored(tmp_path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = StopRequest(tmp_path)
    with stop.signals():
        signal.raise_signal(signal.SIGTERM)
        assert stop()
    assert stop.reason == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
    if hasattr(signal, "SIGBREAK"):  # Windows: CTRL_BREAK_EVENT is trapped too
        assert signal.SIGBREAK in {s for s in signal.valid_signals()}
