"""synthetic_cases and case_loading: the engine's demo cases in the scene, as the self-tests use them.

Why: the extension build machines run the modules' self-tests without torch and without network;
what those self-tests do without torch (load demo cases, add them to a dataset, import a label
file) must work here with neither.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from autoseg.synthetic import LABELS
from AutoSegCoreLib.case_export import export_case
from AutoSegCoreLib.case_loading import load_case
from AutoSegCoreLib.dataset_folder import create_dataset
from AutoSegCoreLib.synthetic_cases import (
    SEGMENT_NAMES,
    demo_case_id,
    demo_dataset,
    end_to_end_skip_reason,
    load_demo_case,
    train_demo_model,
)
from AutoSegCoreLib.volume_io import VolumeError


def test_the_demo_dataset_is_made_once_and_reused(tmp_path: Path) -> None:
    folder = demo_dataset(tmp_path)
    label = folder / "labelsTr" / f"{demo_case_id(0)}.nii.gz"
    stamp = label.stat().st_mtime_ns
    assert demo_dataset(tmp_path) == folder
    assert label.stat().st_mtime_ns == stamp


def test_a_demo_case_loads_with_its_labels_on_the_files_grid(scene, tmp_path: Path) -> None:
    case = load_demo_case(tmp_path, 2)
    (volume,) = case.volumes
    folder = demo_dataset(tmp_path)
    image = sitk.ReadImage(str(folder / "imagesTr" / f"{demo_case_id(2)}_0000.nii.gz"))
    np.testing.assert_array_equal(
        slicer.util.arrayFromVolume(volume), sitk.GetArrayFromImage(image)
    )
    expected = sitk.GetArrayFromImage(
        sitk.ReadImage(str(folder / "labelsTr" / f"{demo_case_id(2)}.nii.gz"))
    )
    segments = case.segmentation.GetSegmentation()
    names = [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())]
    assert names == list(SEGMENT_NAMES)
    for name in SEGMENT_NAMES:
        segment_id = segments.GetSegmentIdBySegmentName(name)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(case.segmentation, segment_id, volume)
        np.testing.assert_array_equal(mask > 0, expected == LABELS[name])


def test_loaded_demo_cases_are_added_to_a_dataset_unchanged(scene, tmp_path: Path) -> None:
    info = create_dataset(tmp_path / "raw", 987, "SelfTest", ["CT"])
    for index in range(2):
        case = load_demo_case(tmp_path / "cache", index)
        exported = export_case(info, case.volumes, case.segmentation, allow_new_labels=True)
        info = exported.dataset
        source = demo_dataset(tmp_path / "cache") / "labelsTr" / f"{demo_case_id(index)}.nii.gz"
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(sitk.ReadImage(str(exported.label_file))),
            sitk.GetArrayFromImage(sitk.ReadImage(str(source))),
        )
    assert len(info.case_ids) == 2


def test_a_case_whose_files_disagree_leaves_nothing_in_the_scene(scene, tmp_path: Path) -> None:
    folder = demo_dataset(tmp_path)
    images = [folder / "imagesTr" / f"{demo_case_id(i)}_0000.nii.gz" for i in (0, 1)]
    label = folder / "labelsTr" / f"{demo_case_id(1)}.nii.gz"
    count = scene.GetNumberOfNodes()
    with pytest.raises(VolumeError, match="do not share one voxel grid"):
        load_case(images, None, LABELS, name="mixed")
    with pytest.raises(VolumeError, match="does not lie on the voxel grid"):
        load_case(images[:1], label, LABELS, name="mixed")
    with pytest.raises(VolumeError, match="case empty: no image file"):
        load_case([], label, LABELS, name="empty")
    assert scene.GetNumberOfNodes() == count


def test_the_end_to_end_part_is_skipped_only_without_torch() -> None:
    reason = end_to_end_skip_reason()
    assert (reason == "") is (importlib.util.find_spec("torch") is not None)


@pytest.mark.slow
@pytest.mark.skipif(end_to_end_skip_reason() != "", reason="needs torch")
def test_a_tiny_demo_model_trains_through_the_command_line(tmp_path: Path) -> None:
    """What the Predict self-test trains in Slicer before it segments a demo volume."""
    model = train_demo_model(tmp_path / "cache", tmp_path, sys.executable)
    assert model.name == "AutoSegTrainer__AutoSegPlans__3d_fullres"
    assert (model / "fold_all" / "checkpoint_final.pth").is_file()
