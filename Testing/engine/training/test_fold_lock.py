"""The fold lock: taken, released, refused while its owner lives, taken over when it is gone."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from autoseg.training import fold_lock
from autoseg.training.fold_lock import (
    LOCK_FILE,
    FoldLocked,
    LockHolder,
    acquire_fold_lock,
    pid_alive,
    read_lock,
)


def _write_lock(folder, **fields) -> None:
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": 1_700_000_000.0,
        "command": "autoseg train 4 3d_fullres 0",
        **fields,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(json.dumps(holder))


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has ended (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_process():
    """Another process of this host that runs for the duration of the test."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_a_lock_names_its_holder_and_is_released(tmp_path) -> None:
    folder = tmp_path / "fold_0"
    with acquire_fold_lock(folder, "autoseg train 4 3d_fullres 0") as lock:
        holder = read_lock(folder)
        assert holder == lock.holder
        assert (holder.pid, holder.host) == (os.getpid(), socket.gethostname())
        assert holder.command == "autoseg train 4 3d_fullres 0"
        assert abs(holder.started - time.time()) < 3600
        assert list(folder.iterdir()) == [folder / LOCK_FILE]  # no temporary files left
    assert read_lock(folder) is None
    lock.release()  # idempotent


def test_a_live_holder_refuses_a_second_run_in_one_line(tmp_path, live_process) -> None:
    folder = tmp_path / "fold_0"
    _write_lock(
        folder, pid=live_process.pid, process_start=fold_lock.process_start(live_process.pid)
    )
    with pytest.raises(FoldLocked) as refused:
        acquire_fold_lock(folder, "second")
    message = str(refused.value)
    assert "\n" not in message
    assert f"pid {live_process.pid} on {socket.gethostname()}" in message
    assert "autoseg train 4 3d_fullres 0" in message
    assert "STOP_REQUEST" in message
    assert read_lock(folder).pid == live_process.pid  # untouched


def test_a_lock_whose_process_is_gone_is_taken_over(tmp_path, dead_pid) -> None:
    folder = tmp_path / "fold_0"
    _write_lock(folder, pid=dead_pid)
    assert not pid_alive(dead_pid)
    with acquire_fold_lock(folder, "resume"):
        assert read_lock(folder).pid == os.getpid()
    assert sorted(p.name for p in folder.iterdir()) == []


def test_a_reused_pid_is_recognised_by_its_start_time(tmp_path, live_process) -> None:
    if fold_lock.process_start(live_process.pid) is None:
        pytest.skip("process start times are read from /proc (Linux)")
    folder = tmp_path / "fold_0"
    _write_lock(folder, pid=live_process.pid, process_start="1")  # another process had that pid
    with acquire_fold_lock(folder, "resume"):
        assert read_lock(folder).pid == os.getpid()


def test_a_lock_left_with_this_processes_pid_is_stale(tmp_path) -> None:
    folder = tmp_path / "fold_0"
    _write_lock(folder)  # e.g. a container that gives every run the same pid
    with acquire_fold_lock(folder, "again"):
        assert read_lock(folder).command == "again"


def test_a_lock_of_another_host_is_respected_with_how_to_remove_it(tmp_path, dead_pid) -> None:
    folder = tmp_path / "fold_0"
    _write_lock(folder, pid=dead_pid, host="gpu-node-7")
    with pytest.raises(FoldLocked, match=r"another computer .*gpu-node-7.*delete .*training\.lock"):
        acquire_fold_lock(folder, "second")


def test_an_unreadable_lock_is_young_or_a_crash_leftover(tmp_path) -> None:
    folder = tmp_path / "fold_0"
    folder.mkdir()
    (folder / LOCK_FILE).write_text('{"pid": 12')
    with pytest.raises(FoldLocked, match="taking this fold's lock right now"):
        acquire_fold_lock(folder, "second")
    old = time.time() - 3600
    os.utime(folder / LOCK_FILE, (old, old))
    with acquire_fold_lock(folder, "second"):
        assert read_lock(folder).command == "second"


def test_release_leaves_a_lock_that_is_not_its_own(tmp_path) -> None:
    folder = tmp_path / "fold_0"
    lock = acquire_fold_lock(folder, "first")
    _write_lock(folder, pid=os.getpid() + 1, started=5.0)  # replaced by someone else meanwhile
    lock.release()
    assert read_lock(folder).started == 5.0


def test_holder_json_round_trip_and_bad_pids() -> None:
    holder = LockHolder(12, "h", 3.0, "c", None)
    assert LockHolder.from_json(json.loads(json.dumps(holder.__dict__))) == holder
    with pytest.raises(ValueError, match="not a JSON object"):
        LockHolder.from_json([1])
    assert not pid_alive(0)
    assert not pid_alive(-1)
    assert pid_alive(os.getpid())
