"""Augmentation workers end when their training process is killed (no orphans holding memory)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autoseg.training.augmentation.worker_lifetime import ParentBoundSource, parent_alive

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL of the parent")
GONE_WITHIN_S = 60.0  # generous: the polling guard needs about a second

# A training-like process: a stream with two workers, one batch taken, then it waits to be killed.
TRAINING_LIKE = textwrap.dedent(
    """
    import json, sys, time
    import numpy as np
    from autoseg.training.augmentation import batch_stream, build_val_transforms
    from autoseg.training.augmentation import worker_lifetime

    if sys.argv[1] == "polling-only":
        worker_lifetime.set_parent_death_signal = lambda: False

    class Loader:
        def set_thread_id(self, thread_id):
            self.thread_id = thread_id

        def __next__(self):
            seg = np.zeros((2, 1, 8, 8, 8), dtype=np.int16)
            data = np.zeros((2, 1, 8, 8, 8), dtype=np.float32)
            return {"data": data, "seg": seg, "keys": ["a", "b"]}

    transforms = build_val_transforms(deep_supervision_scales=None, regions=None, ignore_label=None)
    stream = batch_stream(Loader(), transforms, num_workers=2, seed=0)
    next(stream)
    print(json.dumps([p.pid for p in stream.processes()]), flush=True)
    time.sleep(600)
    """
)


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return not stat.parent.parent.joinpath("self").exists()


@posix_only
@pytest.mark.parametrize("guards", ["both", "polling-only"])
def test_workers_end_when_the_training_process_is_killed(tmp_path, guards) -> None:
    script = tmp_path / "training_like.py"
    script.write_text(TRAINING_LIKE, encoding="utf-8")
    command = [sys.executable, str(script), guards]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            workers = json.loads(process.stdout.readline())
            assert len(workers) == 2
            assert all(_running(pid) for pid in workers)
        finally:
            process.send_signal(signal.SIGKILL)  # no clean-up code runs in the parent
            process.wait()
    deadline = time.monotonic() + GONE_WITHIN_S
    while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_running(pid) for pid in workers)


def test_the_wrapper_forwards_batches_and_arms_the_guard(monkeypatch) -> None:
    armed: list[tuple[int, float]] = []
    monkeypatch.setattr(
        "autoseg.training.augmentation.worker_lifetime.end_with_parent",
        lambda pid, check_s: armed.append((pid, check_s)),
    )

    class Source:
        thread_id = -1

        def set_thread_id(self, thread_id: int) -> None:
            self.thread_id = thread_id

        def __next__(self) -> dict:
            return {"from": self.thread_id}

    source = Source()
    bound = ParentBoundSource(source, check_s=0.5)
    bound.set_thread_id(3)
    assert armed == [(os.getpid(), 0.5)]
    assert next(iter(bound)) == {"from": 3}


def test_this_process_parent_is_alive() -> None:
    assert parent_alive(os.getppid())
    assert not parent_alive(os.getppid() + 1)
