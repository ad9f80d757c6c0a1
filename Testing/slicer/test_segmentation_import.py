"""segmentation_import: names, colours, values and exact geometry of the imported prediction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from AutoSegCoreLib.segmentation_import import (
    SegmentationImportError,
    import_label_file,
    label_color,
)
from AutoSegCoreLib.volume_io import VolumeError

LABELS = {"liver": 1, "kidney": 2, "tumor": 5}
SHAPE = (6, 7, 8)  # (K, J, I)


def oblique_matrix() -> np.ndarray:
    """IJK-to-RAS with a 30 degree rotation, a flipped k axis (det < 0) and odd spacing."""
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    matrix = np.eye(4)
    matrix[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]]) @ np.diag(
        [0.8, 0.9, 2.5]
    )
    matrix[:3, 3] = (-100.5, 20.25, -33.0)
    return matrix


def write_label_file(path: Path, array: np.ndarray, matrix: np.ndarray) -> Path:
    """A label file on the grid of IJK-to-RAS ``matrix`` (written in LPS, like the engine)."""
    image = sitk.GetImageFromArray(array)
    spacing = np.linalg.norm(matrix[:3, :3], axis=0)
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    image.SetSpacing(spacing.tolist())
    image.SetOrigin((ras_to_lps @ matrix[:3, 3]).tolist())
    image.SetDirection((ras_to_lps @ matrix[:3, :3] / spacing).ravel().tolist())
    sitk.WriteImage(image, str(path))
    return path


def label_array() -> np.ndarray:
    """Labels 1 and 5 present (kidney = 2 absent), 7 unknown to the dataset."""
    array = np.zeros(SHAPE, dtype=np.uint8)
    array[1:4, 2:5, 1:6] = 1
    array[4, 1:3, 2:7] = 5
    array[0, 0, 0] = 7
    return array


@pytest.fixture
def volume(scene):
    """An oblique ct volume under a transform, inside a subject-hierarchy folder."""
    array = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    node = slicer.util.addVolumeFromArray(array, oblique_matrix(), name="ct")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 12.0)
    matrix.SetElement(1, 2, 0.3)
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "patient 1")
    hierarchy.CreateItem(folder, node)
    return node


def segment_values(segmentation_node, reference) -> dict[str, np.ndarray]:
    """Each segment's binary mask on the reference volume's grid, keyed by segment name."""
    segmentation = segmentation_node.GetSegmentation()
    masks = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        name = segmentation.GetSegment(segment_id).GetName()
        masks[name] = slicer.util.arrayFromSegmentBinaryLabelmap(
            segmentation_node, segment_id, reference
        )
    return masks


def node_classes(scene) -> list[str]:
    return [scene.GetNthNode(i).GetClassName() for i in range(scene.GetNumberOfNodes())]


def test_every_label_becomes_a_named_coloured_segment(scene, volume, tmp_path: Path) -> None:
    array = label_array()
    file = write_label_file(tmp_path / "case.nii.gz", array, oblique_matrix())
    node = import_label_file(file, volume, LABELS, name="ct segmentation")
    assert node.GetName() == "ct segmentation"
    segmentation = node.GetSegmentation()
    segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
    assert [s.GetName() for s in segments] == ["liver", "kidney", "tumor", "label_7"]
    assert [s.GetLabelValue() for s in segments] == [1, 2, 5, 7]
    assert segmentation.GetSegment("liver").GetName() == "liver"  # IDs are the names
    assert segmentation.GetNumberOfLayers() == 1  # one shared labelmap holding the file's values
    colours = [tuple(s.GetColor()) for s in segments]
    assert len(set(colours)) == len(colours)
    assert colours[0] == pytest.approx(label_color(1))
    display = node.GetDisplayNode()
    assert display.GetVisibility()
    assert all(display.GetSegmentVisibility(segmentation.GetNthSegmentID(i)) for i in range(4))
    masks = segment_values(node, volume)
    for name, value in {**LABELS, "label_7": 7}.items():
        np.testing.assert_array_equal(masks[name], (array == value).astype(masks[name].dtype))
    assert not masks["kidney"].any()  # absent from the prediction, listed all the same


def test_the_segmentation_lies_exactly_on_the_input_volume(scene, volume, tmp_path: Path) -> None:
    file = write_label_file(tmp_path / "case.nii.gz", label_array(), oblique_matrix())
    node = import_label_file(file, volume, LABELS, name="ct segmentation")
    role = node.GetReferenceImageGeometryReferenceRole()
    assert node.GetNodeReferenceID(role) == volume.GetID()
    labelmap = (
        node.GetSegmentation()
        .GetSegment("liver")
        .GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    )
    matrix, expected = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    volume.GetIJKToRASMatrix(expected)
    assert [matrix.GetElement(r, c) for r in range(4) for c in range(4)] == [
        expected.GetElement(r, c) for r in range(4) for c in range(4)
    ]  # exact: the volume's matrix, not the file's float32 header
    assert tuple(labelmap.GetDimensions()) == tuple(volume.GetImageData().GetDimensions())
    assert node.GetTransformNodeID() == volume.GetTransformNodeID() is not None
    reference = slicer.vtkOrientedImageData()
    parameter = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    serialized = node.GetSegmentation().GetConversionParameter(parameter)
    assert slicer.vtkSegmentationConverter.DeserializeImageGeometry(serialized, reference)
    reference.GetImageToWorldMatrix(matrix)
    np.testing.assert_allclose(
        slicer.util.arrayFromVTKMatrix(matrix), oblique_matrix(), rtol=0, atol=1e-9
    )
    assert tuple(reference.GetDimensions()) == tuple(volume.GetImageData().GetDimensions())


def test_the_node_sits_next_to_the_volume_and_adds_nothing_else(
    scene, volume, tmp_path: Path
) -> None:
    file = write_label_file(tmp_path / "case.nii.gz", label_array(), oblique_matrix())
    before = node_classes(scene)
    node = import_label_file(file, volume, LABELS, name="ct segmentation")
    added = node_classes(scene)[len(before) :]
    assert sorted(added) == ["vtkMRMLSegmentationDisplayNode", "vtkMRMLSegmentationNode"]
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(volume))
    assert hierarchy.GetItemName(parent) == "patient 1"
    assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == parent


def test_an_existing_segmentation_is_never_replaced(scene, volume, tmp_path: Path) -> None:
    file = write_label_file(tmp_path / "case.nii.gz", label_array(), oblique_matrix())
    first = import_label_file(file, volume, LABELS, name="ct segmentation")
    second = import_label_file(file, volume, {"organ": 1}, name="ct segmentation")
    assert second is not first
    assert first.GetName() == "ct segmentation"
    assert second.GetName() != first.GetName()
    assert first.GetSegmentation().GetNumberOfSegments() == 4
    assert [second.GetSegmentation().GetNthSegment(i).GetName() for i in range(3)] == [
        "organ",
        "label_5",
        "label_7",
    ]


def test_saved_segmentation_keeps_the_dataset_label_values(scene, volume, tmp_path: Path) -> None:
    array = label_array()
    file = write_label_file(tmp_path / "case.nii.gz", array, oblique_matrix())
    node = import_label_file(file, volume, LABELS, name="ct segmentation")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(tmp_path / "saved.seg.nrrd"))
    assert storage.WriteData(node) == 1
    saved = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "saved.seg.nrrd")))
    np.testing.assert_array_equal(saved, array)


def test_a_file_on_another_grid_is_refused_and_adds_no_node(scene, volume, tmp_path: Path) -> None:
    shifted = oblique_matrix()
    shifted[2, 3] += 1.0
    count = scene.GetNumberOfNodes()
    cases = {
        "moved.nii.gz": (label_array(), shifted),
        "small.nii.gz": (label_array()[:, :, :-1], oblique_matrix()),
    }
    for name, (array, matrix) in cases.items():
        file = write_label_file(tmp_path / name, array, matrix)
        with pytest.raises(VolumeError, match="does not lie on the voxel grid"):
            import_label_file(file, volume, LABELS, name="ct segmentation")
    assert scene.GetNumberOfNodes() == count


def test_files_that_hold_no_labels_are_refused(scene, volume, tmp_path: Path) -> None:
    probabilities = label_array().astype(np.float32) / 7
    file = write_label_file(tmp_path / "p.nii.gz", probabilities, oblique_matrix())
    with pytest.raises(VolumeError, match="holds float32 values") as caught:
        import_label_file(file, volume, LABELS, name="x")
    assert isinstance(caught.value, ValueError)
    with pytest.raises(VolumeError, match="cannot be read"):
        import_label_file(tmp_path / "missing.nii.gz", volume, LABELS, name="x")
    file = write_label_file(tmp_path / "l.nii.gz", label_array(), oblique_matrix())
    with pytest.raises(SegmentationImportError, match="label values must be unique"):
        import_label_file(file, volume, {"a": 1, "b": 1}, name="x")


def test_label_colours_are_fixed_and_distinct() -> None:
    colours = [label_color(value) for value in range(1, 80)]
    assert len(set(colours)) == len(colours)
    assert all(0.0 <= channel <= 1.0 for colour in colours for channel in colour)
    assert label_color(1) == label_color(1)
    assert min(max(colour) for colour in colours) > 0.25  # none nearly black
