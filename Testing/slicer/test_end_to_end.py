"""The Slicer workflow end to end with real MRML and real engine processes.

Three annotated volumes are exported through the Train logic, one fold is planned, preprocessed
and trained for a few iterations through the process runner, and a fourth (oblique) volume is
segmented through the Predict logic. The segmentation node must equal, voxel for voxel, what
``autoseg predict`` writes for the same volume on the command line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
from Testing.slicer.synthetic_scenario import (
    SEGMENT_NAMES,
    segment_scenario_volume,
    train_scenario_model,
)

from AutoSegCoreLib.volume_io import write_input_volumes


def _node_labels(segmentation: object, volume: object, values: dict[str, int]) -> np.ndarray:
    """The segmentation as one label array on the volume's grid, with the dataset's values."""
    shape = slicer.util.arrayFromVolume(volume).shape
    label = np.zeros(shape, np.int16)
    segments = segmentation.GetSegmentation()
    for index in range(segments.GetNumberOfSegments()):
        segment_id = segments.GetNthSegmentID(index)
        name = segments.GetSegment(segment_id).GetName()
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
        label[mask > 0] = values[name]
    return label


def _cli_prediction(volume: object, model_folder: Path, folder: Path) -> np.ndarray:
    inputs, outputs = folder / "cli_in", folder / "cli_out"
    write_input_volumes([volume], inputs)
    command = [sys.executable, "-m", "autoseg", "predict", "-i", str(inputs), "-o", str(outputs)]
    command += ["-m", str(model_folder), "-device", "cpu", "--progress", "none"]
    subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    return sitk.GetArrayFromImage(sitk.ReadImage(str(outputs / "case.nii.gz")))


def test_export_train_and_segment_equals_the_command_line(scene, tmp_path: Path) -> None:
    model = train_scenario_model(scene, tmp_path, sys.executable)
    assert model.fold_done
    assert len(model.case_ids) == 3
    dataset = json.loads((model.dataset_folder / "dataset.json").read_text(encoding="utf-8"))
    values = {name: dataset["labels"][name] for name in SEGMENT_NAMES}
    assert sorted(values.values()) == [1, 2]

    volume, segmentation = segment_scenario_volume(scene, model, sys.executable)
    names = {
        segmentation.GetSegmentation().GetNthSegment(i).GetName()
        for i in range(segmentation.GetSegmentation().GetNumberOfSegments())
    }
    assert names == set(SEGMENT_NAMES)
    reference_role = segmentation.GetReferenceImageGeometryReferenceRole()
    assert segmentation.GetNodeReference(reference_role) is volume

    from_node = _node_labels(segmentation, volume, values)
    from_cli = _cli_prediction(volume, model.model_folder, tmp_path)
    assert from_node.shape == from_cli.shape
    np.testing.assert_array_equal(from_node, from_cli)
