"""Fold state from fold folders built here: checkpoint files and a small events.jsonl."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from AutoSegTrainLib import fold_status as fs

_TRAIN = Path(__file__).resolve().parents[2] / "AutoSegTrain"
DATASET = "Dataset007_Fold"


def _fold(results: Path, configuration: str = "3d_fullres", fold: int | str = 0) -> Path:
    folder = results / DATASET / f"AutoSegTrainer__AutoSegPlans__{configuration}" / f"fold_{fold}"
    folder.mkdir(parents=True)
    return folder


def _write_events(folder: Path, *events: dict[str, Any], tail: str = "") -> None:
    lines = "".join(json.dumps(e) + "\n" for e in events)
    (folder / "events.jsonl").write_text(lines + tail, encoding="utf-8")


def _epoch(k: int, *, ema: float | None, epoch_time: float = 10.0, epochs: int = 5) -> dict:
    return {
        "event": "epoch",
        "epoch": k,
        "epochs": epochs,
        "train_loss": -0.5 - k,
        "val_loss": -0.4 - k,
        "pseudo_dice": [0.5, None],
        "mean_fg_dice": 0.5,
        "ema_fg_dice": ema,
        "epoch_time": epoch_time,
    }


def test_local_names_equal_the_engines() -> None:
    from autoseg.training import validation

    assert (fs.VALIDATION_FOLDER, fs.VALIDATION_SUMMARY) == (
        validation.VALIDATION_FOLDER,
        validation.SUMMARY_FILE,
    )
    trainer_source = Path(sys.modules["autoseg.training.validation"].__file__).with_name(
        "trainer.py"
    )
    assert f'"{fs.PROGRESS_PNG}"' in trainer_source.read_text(encoding="utf-8")


def test_importing_the_train_library_loads_no_torch() -> None:
    code = (
        "import sys; sys.path[:0] = sys.argv[1:]\n"
        "import AutoSegTrainLib.fold_status, AutoSegTrainLib.training_runs\n"
        "print(sorted(m for m in ('torch', 'qt', 'PythonQt') if m in sys.modules))"
    )
    core = _TRAIN.parent / "AutoSegCore"
    result = subprocess.run(
        [sys.executable, "-c", code, str(core), str(_TRAIN)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_fold_folder_uses_the_engine_layout(tmp_path: Path) -> None:
    folder = fs.fold_folder(tmp_path, DATASET, "2d", "all", trainer="T", plans="P")
    assert folder == tmp_path / DATASET / "T__P__2d" / "fold_all"


def test_missing_folder_is_not_started(tmp_path: Path) -> None:
    status = fs.fold_status(tmp_path, DATASET, "3d_fullres", 0)
    assert status.state == "not started"
    assert not status.validated
    assert (status.epochs_done, status.epochs, status.best_ema) == (0, None, None)
    assert status.progress_png is None
    assert status.progress.phase == "not started"


@pytest.mark.parametrize(
    ("files", "state"),
    [
        ((), "not started"),
        (("checkpoint_latest.pth",), "interrupted"),
        (("checkpoint_best.pth",), "interrupted"),
        (("checkpoint_best.pth", "checkpoint_final.pth"), "done"),
        (("checkpoint_final.pth",), "done"),
    ],
)
def test_state_follows_the_checkpoint_files(tmp_path: Path, files: tuple[str, ...], state) -> None:
    folder = _fold(tmp_path, fold=2)
    for name in files:
        (folder / name).write_bytes(b"")
    assert fs.fold_status(tmp_path, DATASET, "3d_fullres", 2).state == state


def test_validated_needs_the_validation_summary(tmp_path: Path) -> None:
    folder = _fold(tmp_path)
    (folder / "checkpoint_final.pth").write_bytes(b"")
    (folder / "validation").mkdir()
    assert not fs.fold_status(tmp_path, DATASET, "3d_fullres", 0).validated
    (folder / "validation" / "summary.json").write_text("{}")
    assert fs.fold_status(tmp_path, DATASET, "3d_fullres", 0).validated


def test_events_give_epochs_best_ema_eta_and_png(tmp_path: Path) -> None:
    folder = _fold(tmp_path, "2d", 1)
    (folder / "checkpoint_best.pth").write_bytes(b"")
    (folder / "progress.png").write_bytes(b"png")
    _write_events(
        folder,
        {"event": "start", "epochs": 5, "resumed_from_epoch": None},
        _epoch(0, ema=0.3, epoch_time=30.0),
        {"event": "checkpoint", "kind": "checkpoint_best", "path": "x"},
        _epoch(1, ema=0.6, epoch_time=10.0),
        _epoch(2, ema=0.5, epoch_time=20.0),
        tail='{"event": "epoch", "epoch": 3',  # being written: not counted yet
    )
    status = fs.fold_status(tmp_path, DATASET, "2d", 1)
    assert status.state == "interrupted"
    assert (status.epochs_done, status.epochs) == (3, 5)
    assert status.best_ema == 0.6
    assert status.progress_png == folder / "progress.png"
    progress = status.progress
    assert progress.phase == "training"
    assert (progress.train_loss, progress.val_loss, progress.ema_fg_dice) == (-2.5, -2.4, 0.5)
    assert progress.pseudo_dice == (0.5, None)
    assert progress.eta_seconds == pytest.approx(2 * 20.0)  # 2 epochs x mean(30, 10, 20)
    assert progress.fraction == pytest.approx(0.6)
    assert "epoch 3/5" in progress.text()
    assert "ETA 0:00:40" in progress.text()


def test_resume_restarts_the_epoch_count_at_the_checkpoint(tmp_path: Path) -> None:
    folder = _fold(tmp_path)
    _write_events(
        folder,
        {"event": "start", "epochs": 5, "resumed_from_epoch": None},
        _epoch(0, ema=0.1),
        _epoch(1, ema=0.2),
        _epoch(2, ema=0.3),  # logged, but the kill came before the next checkpoint
        {"event": "start", "epochs": 5, "resumed_from_epoch": 2},
    )
    progress = fs.fold_status(tmp_path, DATASET, "3d_fullres", 0).progress
    assert (progress.epochs_done, progress.best_ema, progress.phase) == (2, 0.3, "training")


@pytest.mark.parametrize(
    ("last", "phase"),
    [
        ({"event": "checkpoint", "kind": "checkpoint_final", "path": "x"}, "validating"),
        ({"event": "checkpoint", "kind": "checkpoint_latest", "path": "x"}, "training"),
        ({"event": "end", "status": "finished"}, "finished"),
        ({"event": "end", "status": "interrupted", "next_epoch": 1}, "interrupted"),
        ({"event": "error", "message": "RuntimeError: out of memory"}, "error"),
        ({"event": "something new"}, "training"),
    ],
)
def test_phase_follows_the_last_events(tmp_path: Path, last: dict, phase: str) -> None:
    folder = _fold(tmp_path)
    _write_events(folder, {"event": "start", "epochs": 1}, _epoch(0, ema=None, epochs=1), last)
    progress = fs.fold_status(tmp_path, DATASET, "3d_fullres", 0).progress
    assert progress.phase == phase
    assert progress.ema_fg_dice is None
    if phase == "error":
        assert progress.message == "RuntimeError: out of memory"
        assert progress.text().endswith("RuntimeError: out of memory")


def test_validation_event_gives_the_validation_dice() -> None:
    progress = fs.fold_progress(
        [{"event": "validation", "summary": "s.json", "mean_fg_dice": 0.81}, {"event": "end"}]
    )
    assert progress.validation_dice == 0.81
    assert progress.phase == "interrupted"  # an end without status "finished"


def test_eta_needs_an_epoch_and_a_plan() -> None:
    assert fs.FoldProgress().eta_seconds is None
    assert fs.FoldProgress(recent_epoch_times=(1.0,)).eta_seconds is None
    assert fs.FoldProgress().fraction == 0.0
    assert fs.format_duration(3725.4) == "1:02:05"


@pytest.mark.parametrize(
    ("last", "text"),
    [
        ({"event": "stopping", "reason": "stop request"}, "stopping, epoch 1/5, saving checkpoint"),
        (
            {"event": "stopped", "phase": "training", "next_epoch": 1, "checkpoint": "c.pth"},
            "interrupted, epoch 1/5, stopped, resumes at epoch 1",
        ),
        (
            {"event": "stopped", "phase": "training", "next_epoch": 1, "checkpoint": None},
            "interrupted, epoch 1/5, stopped",
        ),
        (
            {"event": "stopped", "phase": "validation", "next_epoch": 5, "checkpoint": "f.pth"},
            "interrupted, epoch 1/5, stopped during the final validation",
        ),
    ],
)
def test_a_stop_shows_while_it_saves_and_after(last: dict, text: str) -> None:
    progress = fs.fold_progress([{"event": "start", "epochs": 5}, _epoch(0, ema=None), last])
    assert progress.text() == text
    resumed = fs.update_progress(progress, {"event": "start", "epochs": 5, "resumed_from_epoch": 1})
    assert (resumed.phase, resumed.message) == ("training", None)


def test_the_status_names_a_live_run_that_holds_the_fold(tmp_path: Path) -> None:
    folder = _fold(tmp_path)
    assert fs.fold_status(tmp_path, DATASET, "3d_fullres", 0).locked_by is None
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"pid": other.pid, "host": socket.gethostname(), "started": 0.0, "command": "run"}
        (folder / "training.lock").write_text(json.dumps(holder))
        locked_by = fs.fold_status(tmp_path, DATASET, "3d_fullres", 0).locked_by
        assert locked_by is not None
        assert locked_by.startswith(f"pid {other.pid} on {socket.gethostname()}")
    finally:
        other.kill()
        other.wait()
    assert fs.fold_status(tmp_path, DATASET, "3d_fullres", 0).locked_by is None  # gone: stale
