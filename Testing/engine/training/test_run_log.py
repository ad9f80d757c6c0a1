from __future__ import annotations

import io
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from autoseg.training.history import EpochRecord
from autoseg.training.run_log import RunLog, jsonable

START = 1_700_000_000.0
EPOCH_KEYS = {
    "event", "time", "epoch", "epochs", "train_loss", "val_loss", "pseudo_dice", "mean_fg_dice",
    "ema_fg_dice", "lr", "epoch_time", "eta_seconds", "new_best",
}  # fmt: skip


class FakeClock:
    """Advances one second per reading, so every line and event has a known time."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def record(epoch: int = 3) -> EpochRecord:
    return EpochRecord(
        epoch=epoch,
        train_loss=-0.5,
        val_loss=math.nan,
        pseudo_dice=(0.8, math.nan),
        mean_fg_dice=0.8,
        ema_fg_dice=0.7,
        lr=0.00982,
        epoch_start=START + 100,
        epoch_end=START + 112.5,
    )


def read_events(folder: Path) -> list[dict]:
    def no_nan(name: str) -> float:
        raise AssertionError(f"{name} in events.jsonl")

    text = (folder / "events.jsonl").read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line, parse_constant=no_nan) for line in text.splitlines()]


def start_info(resumed: int | None = None) -> dict:
    return {
        "fold": 0,
        "configuration": "3d_fullres",
        "epochs": 10,
        "iterations_per_epoch": 250,
        "resumed_from_epoch": resumed,
    }


def test_events_are_strict_json_lines_with_the_expected_keys(tmp_path):
    with RunLog(tmp_path, clock=lambda: START) as log:
        log.start(start_info())
        log.epoch(record(), epochs=10, new_best=True, eta_seconds=75.0)
        log.event("checkpoint", kind="best", path=tmp_path / "checkpoint_best.pth")
        log.event("validation", summary=tmp_path / "summary.json", mean_fg_dice=0.81)
        log.event("end")
    events = read_events(tmp_path)
    assert [e["event"] for e in events] == ["start", "epoch", "checkpoint", "validation", "end"]
    start, epoch, checkpoint, validation, _ = events
    assert start == {"event": "start", "time": START, **start_info()}
    assert set(epoch) == EPOCH_KEYS
    assert epoch["val_loss"] is None
    assert epoch["pseudo_dice"] == [0.8, None]
    assert epoch["epoch_time"] == pytest.approx(12.5)
    assert epoch["new_best"] is True
    assert epoch["eta_seconds"] == 75.0
    assert checkpoint["path"] == str(tmp_path / "checkpoint_best.pth")
    assert validation["summary"].endswith("summary.json")


def test_events_append_across_resumes_and_each_start_gets_its_own_text_log(tmp_path):
    clock = FakeClock()
    with RunLog(tmp_path, clock=clock) as log:
        log.start(start_info())
        log.epoch(record(0), epochs=10, new_best=True, eta_seconds=None)
    clock.now += 3600
    with RunLog(tmp_path, clock=clock) as log:
        log.start(start_info(resumed=1))
        log.epoch(record(1), epochs=10, new_best=False, eta_seconds=9.0)
        log.event("end")
    events = read_events(tmp_path)
    assert [e["event"] for e in events] == ["start", "epoch", "start", "epoch", "end"]
    assert events[2]["resumed_from_epoch"] == 1
    assert len(sorted(tmp_path.glob("training_log_*.txt"))) == 2


def test_text_log_is_named_after_the_start_time_and_not_overwritten(tmp_path):
    first = RunLog(tmp_path, clock=lambda: START)
    second = RunLog(tmp_path, clock=lambda: START)
    first.close()
    second.close()
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.localtime(START))
    assert first.text_path.name == f"training_log_{stamp}.txt"
    assert second.text_path.name == f"training_log_{stamp}_2.txt"


def test_text_log_holds_the_epoch_lines_and_echoes_them(tmp_path):
    echo = io.StringIO()
    with RunLog(tmp_path, echo=echo, clock=FakeClock()) as log:
        log.start(start_info())
        log.epoch(record(3), epochs=10, new_best=True, eta_seconds=3725.4)
        log.epoch(record(4), epochs=10, new_best=False, eta_seconds=None)
    text = log.text_path.read_text(encoding="utf-8")
    assert text == echo.getvalue()
    for line in (
        "Training started",
        "configuration: 3d_fullres",
        "Epoch 3",
        "Epoch 4",
        "Current learning rate: 0.00982",
        "train_loss -0.5000",
        "val_loss nan",
        "Pseudo dice [0.8000, nan]",
        "Epoch time: 12.50 s",
        "Estimated time left: 1:02:05",
    ):
        assert line in text, line
    assert text.count("New best EMA pseudo Dice: 0.7000") == 1
    assert text.count("Estimated time left") == 1
    lines = text.splitlines()
    assert all(line[:4].isdigit() and line[19:20] == "." for line in lines)  # time stamped


def fail_inside_a_run_log(folder: Path, *, reported: bool) -> None:
    with RunLog(folder, clock=FakeClock()) as log:
        if reported:
            log.event("error", message="reported by the trainer")
        else:
            log.start(start_info())
        raise RuntimeError("out of memory")


def test_an_exception_in_the_with_block_is_recorded_once(tmp_path):
    with pytest.raises(RuntimeError):
        fail_inside_a_run_log(tmp_path, reported=False)
    with pytest.raises(RuntimeError):
        fail_inside_a_run_log(tmp_path, reported=True)
    events = read_events(tmp_path)
    assert [e["event"] for e in events] == ["start", "error", "error"]
    assert events[1]["message"] == "RuntimeError: out of memory"
    assert "Training stopped by RuntimeError: out of memory" in log_texts(tmp_path)
    assert events[2]["message"] == "reported by the trainer"


def log_texts(folder: Path) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in folder.glob("training_log_*.txt"))


def test_a_half_line_from_a_crash_does_not_swallow_the_next_event(tmp_path):
    (tmp_path / "events.jsonl").write_bytes(b'{"event": "epoch", "epo')
    with RunLog(tmp_path, clock=FakeClock()) as log:
        log.event("end")
    lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[-1])["event"] == "end"


def test_a_closed_log_refuses_writes(tmp_path):
    log = RunLog(tmp_path, clock=FakeClock())
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.event("end")
    with pytest.raises(ValueError, match="closed"):
        log.message("late")


def test_event_fields_cannot_replace_the_event_name(tmp_path):
    with RunLog(tmp_path, clock=FakeClock()) as log, pytest.raises(ValueError, match="'event'"):
        log.event("end", event="start")


def test_jsonable_turns_numpy_paths_and_non_finite_numbers_into_json():
    value = {
        "n": np.int64(3),
        "x": np.float32(0.5),
        "a": np.array([1.0, np.nan]),
        "p": Path("fold_0"),
        "t": (math.inf, True),
    }
    assert jsonable(value) == {
        "n": 3, "x": 0.5, "a": [1.0, None], "p": "fold_0", "t": [None, True],
    }  # fmt: skip


def test_every_event_is_mirrored_and_a_stop_ends_the_run(tmp_path):
    mirrored: list[dict] = []
    with RunLog(tmp_path, clock=FakeClock(), mirror=mirrored.append) as log:
        log.start(start_info())
        log.event("stopped", reason="stop request", phase="training", next_epoch=3)
    assert mirrored == read_events(tmp_path)
    assert [e["event"] for e in mirrored] == ["start", "stopped"]


def _stop_inside_a_run_log(folder: Path) -> None:
    with RunLog(folder, clock=FakeClock()) as log:
        log.event("stopped", reason="SIGTERM")
        raise KeyboardInterrupt


def test_a_stopped_run_left_by_an_exception_gets_no_error_event(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _stop_inside_a_run_log(tmp_path)
    assert [e["event"] for e in read_events(tmp_path)] == ["stopped"]


def test_events_from_two_threads_stay_whole_lines(tmp_path):
    with RunLog(tmp_path, clock=FakeClock()) as log:

        def write_many(name: str) -> None:
            for k in range(200):
                log.event(name, k=k, padding="x" * 500)

        threads = [threading.Thread(target=write_many, args=(n,)) for n in ("a", "b")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    events = read_events(tmp_path)
    assert sorted(e["event"] for e in events) == ["a"] * 200 + ["b"] * 200
