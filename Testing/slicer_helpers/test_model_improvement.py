"""Improve model's job: when it is possible, the commands it chains and their order, cancel, and
what it reads back (versions kept, comparisons) and hands to the Predict module.

The chain runs with the fake engine of test_training_runs (real child processes, milliseconds);
Testing/slicer/test_loop.py runs the real engine through the whole annotation loop.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from Testing.slicer.model_fixtures import make_model
from Testing.slicer_helpers.test_training_runs import FAKE_ENGINE

from autoseg.errors import AutoSegError
from AutoSegCoreLib.preferences import Preferences
from AutoSegTrainLib.model_improvement import (
    ImprovementRequest,
    improvement_outcome,
    improvement_request,
    plan_improvement,
    switch_predict_to,
    why_not_improvable,
)
from AutoSegTrainLib.training_plan import TrainingRequest
from AutoSegTrainLib.training_runs import TrainingRun

DATASET = "Dataset008_Loop"
MODEL = "AutoSegTrainer__AutoSegPlans__3d_fullres"


class DictSettings:
    """What Preferences needs from QSettings."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def setValue(self, key: str, value: Any) -> None:
        self.values[key] = value


def _choices(**changes: Any) -> TrainingRequest:
    values = {"dataset": DATASET, "configurations": ("3d_fullres",), "folds": (0, 1)}
    return TrainingRequest(**{**values, "device": "cpu", "epochs": 1000, **changes})


def _model(results: Path, folds: tuple[str, ...] = ("0", "1")) -> Path:
    return make_model(results / DATASET, folds=folds, channels=("CT",))


def test_improvement_needs_a_trained_model_of_one_configuration(tmp_path: Path) -> None:
    results = tmp_path / "results"
    reason = why_not_improvable(results, _choices())
    assert reason is not None
    assert reason.startswith(f"{DATASET} has no trained 3d_fullres model yet")
    assert "Train it first" in reason
    (results / DATASET / MODEL).mkdir(parents=True)  # a folder without a trained fold
    assert "no usable 3d_fullres model" in why_not_improvable(results, _choices())
    (results / DATASET / MODEL).rmdir()
    _model(results)
    assert why_not_improvable(results, _choices()) is None
    two = _choices(configurations=("2d", "3d_fullres"))
    assert "one configuration at a time" in why_not_improvable(results, two)
    cascade = _choices(configurations=("3d_lowres", "3d_cascade_fullres"))
    assert "cascade is not fine-tuned" in why_not_improvable(results, cascade)
    with pytest.raises(AutoSegError, match="Fine-tuning epochs -1"):
        improvement_request(_choices(), -1)


def test_the_panel_epochs_are_not_the_fine_tuning_epochs() -> None:
    request = improvement_request(_choices(iterations_per_epoch=5, gpus=(0,), device="auto"))
    assert request == ImprovementRequest(
        DATASET, "3d_fullres", (0, 1), "auto", (0,), None, 5, True, ()
    )
    assert request.train_device == "cuda"
    assert improvement_request(_choices(), 12).epochs == 12


def test_the_job_plans_from_the_model_then_fine_tunes_each_fold(tmp_path: Path) -> None:
    results, pre, raw = tmp_path / "results", tmp_path / "pre", tmp_path / "raw"
    model = _model(results)
    (model / "versions" / "1").mkdir(parents=True)
    (model / "fold_1" / "checkpoint_latest.pth").write_bytes(b"")  # an improvement was stopped
    (model / "fold_1" / "checkpoint_final.pth").unlink()
    request = improvement_request(_choices(), 7)
    job = plan_improvement(request, results, pre, raw_root=raw)
    folders = ("--raw", str(raw), "--preprocessed", str(pre), "--results", str(results))
    plan, fold0, fold1 = job.steps
    assert plan.args == (
        "plan_and_preprocess", "-d", DATASET, "-c", "3d_fullres", "--plans-from", str(model),
        "--progress", "json", *folders,
    )  # fmt: skip
    train = ("train", DATASET, "3d_fullres")
    fine_tune = ("-device", "cpu", "--from-model", str(model), "--epochs", "7", "--npz")
    assert fold0.args == (*train, "0", *fine_tune, *folders)
    assert fold1.args == (*train, "1", *fine_tune, "--c", *folders)
    assert fold0.label == "Improve 3d_fullres fold 0"
    assert fold1.label == "Resume improving 3d_fullres fold 1"
    assert fold0.depends_on == fold1.depends_on == (plan.key,)
    assert (fold0.fold, fold0.fold_dir) == (("3d_fullres", 0), model / "fold_0")
    assert job.model_folder == model
    assert job.versions_before == (1,)
    engine_default = plan_improvement(improvement_request(_choices()), results, pre)
    assert "--epochs" not in engine_default.steps[1].args
    assert "--raw" not in engine_default.steps[0].args


@pytest.fixture
def fake_engine(tmp_path: Path):
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE, encoding="utf-8")
    log = tmp_path / "log.jsonl"

    def run(steps, **env: str) -> TrainingRun:
        return TrainingRun(
            steps,
            python=sys.executable,
            env_overrides={"FAKE_LOG": str(log), **env},
            command_builder=lambda python, args: [python, str(script), *args],
        )

    run.started = lambda: [
        " ".join(entry["args"][:4])
        for entry in map(json.loads, log.read_text().splitlines() if log.is_file() else [])
        if entry["what"] == "start"
    ]
    return run


def _wait(run: TrainingRun, until=lambda snapshot: False) -> None:
    deadline = time.monotonic() + 60.0  # ends as soon as the run does
    while not run.is_finished and time.monotonic() < deadline:
        if until(run.tick()):
            return
        time.sleep(0.01)
    run.tick()


def test_the_chain_runs_planning_then_the_folds(tmp_path: Path, fake_engine) -> None:
    results = tmp_path / "results"
    _model(results)
    job = plan_improvement(improvement_request(_choices()), results, tmp_path / "pre")
    run = fake_engine(job.steps)
    _wait(run)
    assert run.failed_message is None
    assert [s.state for s in run.snapshot().steps] == ["done", "done", "done"]
    assert fake_engine.started() == [
        f"plan_and_preprocess -d {DATASET} -c",
        f"train {DATASET} 3d_fullres 0",
        f"train {DATASET} 3d_fullres 1",
    ]


def test_cancel_stops_the_fold_and_starts_nothing_else(tmp_path: Path, fake_engine) -> None:
    results = tmp_path / "results"
    model = _model(results, folds=("all",))  # trained on every case; folds 0 and 1 start from it
    job = plan_improvement(improvement_request(_choices()), results, tmp_path / "pre")
    run = fake_engine(job.steps, FAKE_EPOCH_S="30")
    _wait(run, until=lambda snapshot: snapshot.step("train 3d_fullres 0").state == "running")
    run.cancel(block=True)
    states = [s.state for s in run.snapshot().steps]
    assert states == ["done", "cancelled", "cancelled"]
    assert run.cancelled
    assert fake_engine.started()[-1] == f"train {DATASET} 3d_fullres 0"
    assert (model / "fold_0" / "checkpoint_latest.pth").is_file()  # it resumes next time
    again = plan_improvement(improvement_request(_choices()), results, tmp_path / "pre")
    assert "--c" in again.steps[1].args
    assert "--c" not in again.steps[2].args


def test_a_stopped_improvement_of_the_only_fold_resumes(tmp_path: Path) -> None:
    """The engine kept the model as versions/1 and emptied fold_all, which was then stopped."""
    results = tmp_path / "results"
    model = _model(results, folds=("all",))
    (model / "fold_all" / "checkpoint_final.pth").rename(
        model / "fold_all" / "checkpoint_latest.pth"
    )
    choices = _choices(folds=("all",))
    assert "no usable 3d_fullres model" in why_not_improvable(results, choices)
    (model / "versions" / "1").mkdir(parents=True)
    assert why_not_improvable(results, choices) is None
    job = plan_improvement(improvement_request(choices), results, tmp_path / "pre")
    assert job.steps[1].label == "Resume improving 3d_fullres fold all"
    assert "--c" in job.steps[1].args


def _comparison(added: list[str] | None) -> dict:
    scores = {
        "previous": {"Dice": {"organ": 0.5, "lesion": float("nan")}, "mean": 0.25},
        "new": {"Dice": {"organ": 0.75, "lesion": 0.5}, "mean": 0.625},
    }
    empty = {"previous": None, "new": None}
    return {
        "fold": "0",
        "case_sets": {
            "added": {"cases": added, **(scores if added else empty)},
            "validation": {"cases": ["case_000", "case_001"], **scores},
        },
    }


def test_the_outcome_names_the_versions_kept_and_the_comparisons(tmp_path: Path) -> None:
    results = tmp_path / "results"
    model = _model(results)
    (model / "versions" / "1").mkdir(parents=True)
    job = plan_improvement(improvement_request(_choices()), results, tmp_path / "pre")
    for number in (2, 3):  # the job kept one version per fold it trained
        (model / "versions" / str(number)).mkdir()
    validation = model / "fold_0" / "validation"
    validation.mkdir()
    comparison = _comparison(["case_003"])
    (validation / "comparison.json").write_text(json.dumps(comparison), encoding="utf-8")
    outcome = improvement_outcome(job)
    assert outcome.kept_versions == (model / "versions" / "2", model / "versions" / "3")
    assert outcome.previous_model == model / "versions" / "2"
    assert outcome.comparisons["0"]["case_sets"]["added"]["cases"] == ["case_003"]
    assert outcome.comparisons["1"] is None
    assert outcome.table_lines() == [
        "Fold 0: Dice, previous -> new model",
        "  added (1 cases): mean 0.250 -> 0.625, organ 0.500 -> 0.750, lesion - -> 0.500",
        "  validation (2 cases): mean 0.250 -> 0.625, organ 0.500 -> 0.750, lesion - -> 0.500",
        "Fold 1: no before/after comparison (see the engine log).",
    ]
    assert outcome.summary() == (
        f"Improved {MODEL}; AutoSeg Predict now uses it. The previous model is kept as "
        f"{model / 'versions' / '2'}."
    )
    (validation / "comparison.json").write_text(json.dumps(_comparison(None)), encoding="utf-8")
    assert improvement_outcome(job).table_lines()[1] == "  added: unknown"
    (validation / "comparison.json").write_text("{broken", encoding="utf-8")
    assert improvement_outcome(job).comparisons["0"] is None


def test_the_predict_module_is_switched_to_the_improved_model(tmp_path: Path) -> None:
    results = tmp_path / "results"
    model = _model(results)
    job = plan_improvement(improvement_request(_choices()), results, tmp_path / "pre")
    store = DictSettings()
    Preferences.update(store, last_model=results / DATASET)  # Predict showed the dataset
    switch_predict_to(store, improvement_outcome(job))
    assert Preferences.load(store).last_model == model
