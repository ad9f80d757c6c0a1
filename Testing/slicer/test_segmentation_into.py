"""segmentation_import.import_label_file_into: a prediction written into a chosen segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
from Testing.slicer.test_segmentation_import import (
    LABELS,
    label_array,
    oblique_matrix,
    segment_values,
    volume,
    write_label_file,
)

from AutoSegCoreLib.segmentation_import import (
    SegmentationImportError,
    import_label_file_into,
    label_color,
)

__all__ = ["volume"]  # the fixture, used by name


def _existing(scene, volume_node) -> slicer.vtkMRMLSegmentationNode:
    """A user's segmentation: 'tumor' (to be replaced, custom colour), 'vessel' (to be kept)."""
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    node.CreateDefaultDisplayNodes()
    node.SetAndObserveTransformNodeID(volume_node.GetParentTransformNode().GetID())
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    vessel = np.zeros(label_array().shape, dtype=np.uint8)
    vessel[0:2, 0:3, 0:3] = 1
    tumor = np.ones_like(vessel)
    for name in ("tumor", "vessel"):
        segment_id = node.GetSegmentation().AddEmptySegment(name, name)
        slicer.util.updateSegmentBinaryLabelmapFromArray(
            tumor if name == "tumor" else vessel, node, segment_id, volume_node
        )
    node.GetSegmentation().GetSegment("tumor").SetColor(0.1, 0.2, 0.3)
    return node


def _names(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [
        segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())
    ]


def test_same_names_are_replaced_others_kept_new_ones_appended(scene, volume, tmp_path) -> None:
    array = label_array()
    file = write_label_file(tmp_path / "case.nii.gz", array, oblique_matrix())
    node = _existing(scene, volume)
    kept_vessel = segment_values(node, volume)["vessel"].copy()
    assert import_label_file_into(file, volume, LABELS, node) is node
    assert _names(node) == ["tumor", "vessel", "liver", "kidney", "label_7"]
    segmentation = node.GetSegmentation()
    assert segmentation.GetNthSegmentID(0) == "tumor"  # the replaced segment keeps its ID ...
    assert segmentation.GetSegment("tumor").GetColor() == pytest.approx((0.1, 0.2, 0.3))  # colour
    assert segmentation.GetSegment("tumor").GetLabelValue() == 5
    assert segmentation.GetSegment("liver").GetColor() == pytest.approx(label_color(1))
    masks = segment_values(node, volume)
    np.testing.assert_array_equal(masks["tumor"], (array == 5).astype(masks["tumor"].dtype))
    np.testing.assert_array_equal(masks["liver"], (array == 1).astype(masks["liver"].dtype))
    np.testing.assert_array_equal(masks["vessel"], kept_vessel)
    assert not masks["kidney"].any()
    classes = [scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes())]
    assert classes.count("vtkMRMLSegmentationNode") == 1  # nothing else was added


def test_an_empty_segmentation_takes_the_volume_grid(scene, volume, tmp_path) -> None:
    array = label_array()
    file = write_label_file(tmp_path / "case.nii.gz", array, oblique_matrix())
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    node.SetAndObserveTransformNodeID(volume.GetParentTransformNode().GetID())
    import_label_file_into(file, volume, LABELS, node)
    masks = segment_values(node, volume)
    np.testing.assert_array_equal(masks["liver"], (array == 1).astype(masks["liver"].dtype))


def test_a_segmentation_under_another_transform_is_refused(scene, volume, tmp_path) -> None:
    file = write_label_file(tmp_path / "case.nii.gz", label_array(), oblique_matrix())
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "elsewhere")
    with pytest.raises(SegmentationImportError, match="different parent transforms"):
        import_label_file_into(file, volume, LABELS, node)
    assert node.GetSegmentation().GetNumberOfSegments() == 0
