"""The Train module's progress table: what each cell says for running, planned and stored folds."""

from __future__ import annotations

import json
from pathlib import Path

from AutoSegTrainLib.fold_status import FoldProgress
from AutoSegTrainLib.progress_table import COLUMNS, fold_status_rows, step_row
from AutoSegTrainLib.training_plan import TrainingRequest
from AutoSegTrainLib.training_runs import PlanProgress, StepSnapshot

DATASET = "Dataset009_Table"


def test_a_training_fold_shows_epoch_losses_dice_and_time_left() -> None:
    progress = FoldProgress(
        phase="training",
        epochs_done=3,
        epochs=10,
        train_loss=-0.51234,
        val_loss=-0.4,
        mean_fg_dice=0.61,
        ema_fg_dice=0.55,
        recent_epoch_times=(30.0, 30.0),
    )
    step = StepSnapshot(
        "train 3d_fullres 0", "Train 3d_fullres fold 0", "running", gpu=1, fold_progress=progress
    )
    row = step_row(step)
    assert len(row) == len(COLUMNS)
    assert row == (
        "Train 3d_fullres fold 0 (GPU 1)",
        "training",
        "3/10",
        "-0.5123",
        "-0.4000",
        "0.6100",
        "0.5500",
        "0:03:30",
    )


def test_planning_shows_its_stage_and_a_waiting_step_only_its_state() -> None:
    plan = StepSnapshot(
        "plan",
        "Plan and preprocess",
        "running",
        plan_progress=PlanProgress("preprocess 3d_fullres", 4, 10),
    )
    assert step_row(plan)[:3] == ("Plan and preprocess", "running", "preprocess 3d_fullres 4/10")
    waiting = StepSnapshot("find_best", "Find the best configuration", "waiting")
    assert step_row(waiting) == ("Find the best configuration", "waiting", *("",) * 6)


def test_stored_folds_are_listed_for_every_requested_fold(tmp_path: Path) -> None:
    fold = tmp_path / DATASET / "AutoSegTrainer__AutoSegPlans__3d_fullres" / "fold_1"
    fold.mkdir(parents=True)
    (fold / "checkpoint_latest.pth").write_bytes(b"")
    event = {"event": "epoch", "epoch": 4, "epochs": 20, "ema_fg_dice": 0.7, "epoch_time": 5.0}
    (fold / "events.jsonl").write_text(json.dumps(event) + "\n", encoding="utf-8")
    request = TrainingRequest(DATASET, ("3d_fullres",), folds=(0, 1))
    rows = fold_status_rows(tmp_path, request)
    assert [row[:3] for row in rows] == [
        ("3d_fullres fold 0", "not started", ""),
        ("3d_fullres fold 1", "interrupted", "5/20"),
    ]
    assert rows[1][6] == "0.7000"
