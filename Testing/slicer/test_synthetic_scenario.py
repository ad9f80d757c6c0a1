"""The test scenario's parts without torch (the end-to-end part is test_end_to_end.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import slicer
from Testing.slicer.synthetic_scenario import (
    SEGMENT_NAMES,
    export_scenario_cases,
    import_scenario_prediction,
    oracle_label_array,
)

from AutoSegCoreLib.dataset_folder import open_dataset
from AutoSegCoreLib.synthetic_cases import end_to_end_skip_reason


def test_three_cases_are_exported_into_a_new_dataset(scene, tmp_path: Path) -> None:
    info, case_ids = export_scenario_cases(scene, tmp_path / "raw")
    assert len(case_ids) == 3
    reopened = open_dataset(info.folder)
    assert reopened.case_ids == tuple(case_ids)
    assert set(SEGMENT_NAMES) <= set(reopened.labels)


def test_a_label_file_made_without_torch_imports_onto_the_oblique_volume(
    scene, tmp_path: Path
) -> None:
    volume, segmentation = import_scenario_prediction(scene, tmp_path)
    segments = segmentation.GetSegmentation()
    names = [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())]
    assert names == list(SEGMENT_NAMES)
    role = segmentation.GetReferenceImageGeometryReferenceRole()
    assert segmentation.GetNodeReference(role) is volume
    expected = oracle_label_array(3)
    for value, name in enumerate(SEGMENT_NAMES, start=1):
        segment_id = segments.GetSegmentIdBySegmentName(name)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
        np.testing.assert_array_equal(mask > 0, expected == value)


def test_the_end_to_end_part_is_skipped_only_without_torch() -> None:
    reason = end_to_end_skip_reason()
    assert (reason == "") is (importlib.util.find_spec("torch") is not None)
