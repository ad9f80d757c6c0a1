"""The annotation loop end to end: real MRML, the real engine in child processes, tiny budgets.

A tiny model is trained on three synthetic cases through the Train logic, a fourth (oblique)
volume is segmented through the Predict logic, its segmentation is corrected programmatically
(as a user would in the Segment Editor) and added to the model's dataset with the correction
logic, and the model is improved by a warm start through the Improve model job. Then: the
previous model is kept as a version, the before/after comparison is written and names the added
case, only the new case was preprocessed, the Predict module is switched to the improved model
and segments with it, and the kept version still predicts.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from Testing.slicer.synthetic_scenario import (
    ORACLE_LABELS,
    SEGMENT_NAMES,
    add_synthetic_case,
    oracle_label_array,
    segment_scenario_volume,
    train_scenario_model,
)

from AutoSegCoreLib.preferences import Preferences
from AutoSegPredictLib.model_catalog import describe_model, found_models
from AutoSegPredictLib.predict_logic import AutoSegPredictLogic
from AutoSegPredictLib.training_case import Correction, find_training_dataset
from AutoSegTrainLib.model_improvement import (
    improvement_outcome,
    improvement_request,
    plan_improvement,
    switch_predict_to,
)
from AutoSegTrainLib.training_plan import TrainingRequest
from AutoSegTrainLib.training_runs import TrainingRun

RUN_DEADLINE_S = 900.0  # a loaded machine; the loop ends as soon as the run does
PREDICT_DEADLINE_S = 300.0


class DictSettings:
    """What Preferences needs from QSettings."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def value(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def setValue(self, key: str, value: Any) -> None:
        self.values[key] = value


def _correct(segmentation: Any, volume: Any) -> None:
    """What the user does in the Segment Editor: every segment redrawn as the truth."""
    truth = oracle_label_array(3)
    segments = segmentation.GetSegmentation()
    for name in SEGMENT_NAMES:
        segment_id = segments.GetSegmentIdBySegmentName(name)
        mask = (truth == ORACLE_LABELS[name]).astype(np.uint8)
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask, segmentation, segment_id, volume)


def _run_to_the_end(run: TrainingRun) -> None:
    deadline = time.monotonic() + RUN_DEADLINE_S
    while not run.is_finished and time.monotonic() < deadline:
        run.tick()
        time.sleep(0.2)
    if not run.is_finished:
        run.cancel(block=True)
    assert run.is_finished, "the improvement did not end"
    assert run.failed_message is None, run.failed_message
    assert [step.state for step in run.snapshot().steps] == ["done", "done"]


def _stored_cases(preprocessed: Path) -> dict[str, int]:
    """Every preprocessed file of the dataset's 3d_fullres data, with its modification time."""
    (data,) = preprocessed.glob("*/AutoSegPlans_3d_fullres")
    return {path.name: path.stat().st_mtime_ns for path in sorted(data.iterdir())}


def _segment_names(segmentation: Any) -> set[str]:
    segments = segmentation.GetSegmentation()
    return {segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())}


@pytest.mark.slow
def test_segment_correct_add_and_improve_the_model(scene, tmp_path: Path) -> None:
    python = sys.executable
    raw, preprocessed, results = (tmp_path / n for n in ("raw", "preprocessed", "results"))
    model = train_scenario_model(scene, tmp_path, python)
    assert model.fold_done
    volume, segmentation = segment_scenario_volume(scene, model, python)

    _correct(segmentation, volume)
    dataset_name = describe_model(model.model_folder).training_dataset
    dataset_folder = find_training_dataset(dataset_name, [raw])
    assert dataset_folder == model.dataset_folder
    added = Correction(segmentation, (volume,), dataset_name).add_case(dataset_folder)
    label = sitk.ReadImage(str(dataset_folder / "labelsTr" / f"{added.case_id}.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), oracle_label_array(3))
    stored_before = _stored_cases(preprocessed)

    choices = TrainingRequest(
        dataset=dataset_name,
        configurations=("3d_fullres",),
        folds=("all",),
        device="cpu",
        iterations_per_epoch=2,
        extra_train_args=("--set", "val_iterations=2"),
    )
    job = plan_improvement(improvement_request(choices, 1), results, preprocessed, raw_root=raw)
    assert job.model_folder == model.model_folder
    _run_to_the_end(TrainingRun(job.steps, python=python))
    outcome = improvement_outcome(job)

    kept = model.model_folder / "versions" / "1"
    assert outcome.kept_versions == (kept,)
    before = (kept / "fold_all" / "checkpoint_final.pth").read_bytes()
    after = (model.model_folder / "fold_all" / "checkpoint_final.pth").read_bytes()
    assert before != after
    comparison = outcome.comparisons["all"]
    assert comparison["previous_model"]["path"] == str(kept)
    assert comparison["case_sets"]["added"]["cases"] == [added.case_id]
    assert comparison["case_sets"]["added"]["new"]["mean"] is not None
    assert outcome.table_lines()[0] == "Fold all: Dice, previous -> new model"
    stored_after = _stored_cases(preprocessed)
    assert {k: stored_after[k] for k in stored_before} == stored_before  # old cases kept
    assert any(name.startswith(added.case_id) for name in set(stored_after) - set(stored_before))

    store = DictSettings()
    switch_predict_to(store, outcome)
    chosen = Preferences.load(store).last_model
    assert chosen == model.model_folder
    listed = {folder: text for text, folder in found_models([results])}
    assert "(kept version 1)" in listed[kept]
    logic = AutoSegPredictLogic(python)
    fifth, _ = add_synthetic_case(scene, 4)
    improved = logic.segment(fifth, chosen, device="cpu", tta=False, timeout=PREDICT_DEADLINE_S)
    assert _segment_names(improved) == set(SEGMENT_NAMES)
    old = logic.segment(fifth, kept, device="cpu", tta=False, timeout=PREDICT_DEADLINE_S)
    assert _segment_names(old) == set(SEGMENT_NAMES)
