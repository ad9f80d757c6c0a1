"""training_case: a corrected prediction opened in the Segment Editor and added as a new case of
the model's raw dataset, with the dataset's label mapping and the Train module's refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from Testing.slicer.synthetic_scenario import (
    add_synthetic_case,
    export_scenario_cases,
    oracle_label_array,
)

from AutoSegCoreLib.case_export import CaseExportError, NewLabelsNeedConfirmation
from AutoSegPredictLib.training_case import (
    Correction,
    find_training_dataset,
    segment_editor_node,
)


@pytest.fixture
def dataset(scene, tmp_path: Path) -> Path:
    info, _ = export_scenario_cases(scene, tmp_path / "raw")
    return info.folder


def test_the_dataset_is_found_under_the_first_raw_root_that_has_it(tmp_path, dataset) -> None:
    empty = tmp_path / "empty_root"
    (empty / dataset.name).mkdir(parents=True)  # a folder without dataset.json does not count
    roots = [None, empty, dataset.parent]
    assert find_training_dataset(dataset.name, roots) == dataset
    assert find_training_dataset("Dataset555_Other", roots) is None


def test_open_editor_selects_segmentation_and_volume_in_the_editors_node(scene) -> None:
    volume, segmentation = add_synthetic_case(scene, 3)
    correction = Correction(segmentation, (volume,), "x")
    node = correction.open_editor()
    assert node is segment_editor_node(scene)  # the module's singleton, made once
    assert node.GetSingletonTag() == "SegmentEditor"
    assert node.GetSegmentationNode() is segmentation
    assert node.GetSourceVolumeNode() is volume
    assert correction.open_editor() is node
    assert correction.still_in_scene
    scene.RemoveNode(segmentation)
    assert not correction.still_in_scene


def _label_file(exported) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(exported.label_file)))


def test_a_corrected_prediction_becomes_the_next_case(scene, dataset) -> None:
    volume, segmentation = add_synthetic_case(scene, 3)  # stands for the model's result
    correction = Correction(segmentation, (volume,), dataset.name)
    correction.open_editor()
    organ = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, "organ", volume)
    organ[:, :, :3] = 0  # the user erases a wrong part
    slicer.util.updateSegmentBinaryLabelmapFromArray(organ, segmentation, "organ", volume)
    exported = correction.add_case(dataset)
    assert exported.case_id not in ("", None)
    assert exported.label_values == {"organ": 1, "lesion": 2}  # the dataset's values, by name
    expected = oracle_label_array(3)
    expected[:, :, :3][expected[:, :, :3] == 1] = 0
    np.testing.assert_array_equal(_label_file(exported), expected)
    data = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    assert data["numTraining"] == 4


def test_new_names_need_confirmation_and_overlaps_are_refused(scene, dataset) -> None:
    volume, segmentation = add_synthetic_case(scene, 3)
    vessel = np.zeros(oracle_label_array(3).shape, np.uint8)
    vessel[0, 0, 0] = 1
    segmentation.GetSegmentation().AddEmptySegment("vessel", "vessel")
    slicer.util.updateSegmentBinaryLabelmapFromArray(vessel, segmentation, "vessel", volume)
    correction = Correction(segmentation, (volume,), dataset.name)
    with pytest.raises(NewLabelsNeedConfirmation, match="vessel"):
        correction.add_case(dataset)
    exported = correction.add_case(dataset, allow_new_labels=True)
    assert exported.label_values["vessel"] == 3
    before = sorted(p.name for p in (dataset / "labelsTr").iterdir())
    lesion = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, "lesion", volume)
    slicer.util.updateSegmentBinaryLabelmapFromArray(
        np.maximum(lesion, vessel), segmentation, "lesion", volume
    )
    with pytest.raises(CaseExportError, match="vessel"):
        correction.add_case(dataset)
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == before
