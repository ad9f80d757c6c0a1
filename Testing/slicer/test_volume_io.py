"""volume_io: files carry each volume's exact voxels and local geometry both ways, or a clear refusal."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

from AutoSegCoreLib.volume_io import (
    VolumeError,
    as_volume_list,
    ijk_to_ras,
    label_map_node,
    read_label_array,
    read_volume_file,
    same_grid,
    write_input_volumes,
    write_volume_file,
)

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def oblique_matrix(
    spacing: tuple[float, float, float] = (0.8, 0.9, 2.5),
    origin: tuple[float, float, float] = (-100.5, 20.25, -33.0),
) -> np.ndarray:
    """IJK-to-RAS: 30 degrees about S, k axis flipped (det < 0), anisotropic spacing."""
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, -1.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(spacing)
    matrix[:3, 3] = origin
    return matrix


def add_volume(name: str, shape=(5, 6, 7), matrix=None, seed: int = 0, dtype=np.int16):
    """A volume from a (K, J, I) array; values differ per voxel so flips would show."""
    array = np.random.default_rng(seed).integers(-1000, 1000, size=shape).astype(dtype)
    matrix = oblique_matrix() if matrix is None else matrix
    return slicer.util.addVolumeFromArray(array, matrix, name=name), array


def file_ijk_to_ras(image: sitk.Image) -> np.ndarray:
    matrix = np.eye(4)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    matrix[:3, :3] = RAS_TO_LPS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = RAS_TO_LPS @ np.array(image.GetOrigin())
    return matrix


def add_transform(scene, translation=(10.0, -5.0, 3.0)):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "moved")
    matrix = vtk.vtkMatrix4x4()
    for row, value in enumerate(translation):
        matrix.SetElement(row, 3, value)
    matrix.SetElement(0, 1, 0.2)  # a shear: clearly not the identity
    transform.SetMatrixTransformToParent(matrix)
    return transform


def test_one_volume_is_written_with_exact_voxels_and_geometry(scene, tmp_path: Path) -> None:
    volume, array = add_volume("ct")
    nodes_before = scene.GetNumberOfNodes()
    files = write_input_volumes(volume, tmp_path / "in")
    assert files == [tmp_path / "in" / "case_0000.nii.gz"]
    image = sitk.ReadImage(str(files[0]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), array)  # (K, J, I), no flip
    np.testing.assert_allclose(file_ijk_to_ras(image), ijk_to_ras(volume), atol=1e-5)
    assert np.linalg.det(np.array(image.GetDirection()).reshape(3, 3)) < 0
    assert scene.GetNumberOfNodes() == nodes_before  # no storage node left behind
    assert volume.GetStorageNode() is None


def test_channels_are_numbered_in_order_and_other_endings_work(scene, tmp_path: Path) -> None:
    first, first_array = add_volume("t1", seed=1)
    second, second_array = add_volume("t2", seed=2, dtype=np.float32)
    files = write_input_volumes([first, second], tmp_path, file_ending=".nrrd", case_id="pat")
    assert [f.name for f in files] == ["pat_0000.nrrd", "pat_0001.nrrd"]
    for file, array in zip(files, (first_array, second_array), strict=True):
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(file))), array)


def test_a_volume_under_a_transform_is_written_in_local_coordinates(scene, tmp_path: Path) -> None:
    volume, _ = add_volume("moved ct")
    volume.SetAndObserveTransformNodeID(add_transform(scene).GetID())
    (file,) = write_input_volumes([volume], tmp_path)
    image = sitk.ReadImage(str(file))
    np.testing.assert_allclose(file_ijk_to_ras(image), oblique_matrix(), atol=1e-5)


def test_channels_on_different_grids_are_refused_before_writing(scene, tmp_path: Path) -> None:
    first, _ = add_volume("t1")
    shifted, _ = add_volume("t2", matrix=oblique_matrix(origin=(-100.5, 20.25, -30.0)))
    smaller, _ = add_volume("t2 small", shape=(5, 6, 6))
    for other in (shifted, smaller):
        with pytest.raises(VolumeError, match="do not share one voxel grid") as caught:
            write_input_volumes([first, other], tmp_path / "in")
        assert "'t1'" in str(caught.value)
        assert "Resample" in str(caught.value)
        assert isinstance(caught.value, ValueError)
    assert not (tmp_path / "in").exists()


def test_channels_under_different_transforms_are_refused(scene, tmp_path: Path) -> None:
    first, _ = add_volume("t1")
    second, _ = add_volume("t2")
    second.SetAndObserveTransformNodeID(add_transform(scene).GetID())
    with pytest.raises(VolumeError, match="different parent transforms"):
        write_input_volumes([first, second], tmp_path)
    first.SetAndObserveTransformNodeID(second.GetTransformNodeID())
    assert len(write_input_volumes([first, second], tmp_path)) == 2


def test_unusable_inputs_are_refused_with_the_reason(scene, tmp_path: Path) -> None:
    volume, _ = add_volume("ct")
    with pytest.raises(VolumeError, match="no input volume"):
        write_input_volumes([], tmp_path)
    with pytest.raises(VolumeError, match="channel 1: expected a scalar volume node, got nothing"):
        write_input_volumes([volume, None], tmp_path)
    with pytest.raises(VolumeError, match=r"'\.png' files"):
        write_input_volumes([volume], tmp_path, file_ending=".png")
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(VolumeError, match="'empty' holds no image data"):
        write_input_volumes([empty], tmp_path)
    with pytest.raises(VolumeError, match="expected a volume node or a list"):
        as_volume_list("ct")


def test_a_colour_volume_is_refused(scene, tmp_path: Path) -> None:
    colour = slicer.util.addVolumeFromArray(
        np.zeros((3, 4, 5, 3), dtype=np.uint8),
        name="photo",
        nodeClassName="vtkMRMLVectorVolumeNode",
    )
    with pytest.raises(VolumeError, match="'photo' has 3 components"):
        write_input_volumes([colour], tmp_path)


def test_a_failed_write_is_an_error_naming_the_volume(scene, tmp_path: Path) -> None:
    volume, _ = add_volume("ct")
    (tmp_path / "case_0000.nii.gz").mkdir()  # a folder where the file must go
    expected = vtk.vtkStringOutputWindow()  # this error is expected: keep it from the fixture
    previous = vtk.vtkOutputWindow.GetInstance()
    vtk.vtkOutputWindow.SetInstance(expected)
    try:
        with pytest.raises(VolumeError, match="could not write volume 'ct'"):
            write_input_volumes([volume], tmp_path)
    finally:
        vtk.vtkOutputWindow.SetInstance(previous)
    assert "ERROR" in expected.GetOutput()  # the storage node said why


def test_a_written_file_reads_back_exactly_also_left_handed(scene, tmp_path: Path) -> None:
    """Slicer's reader flips a left-handed k axis by default; read_volume_file never does."""
    volume, array = add_volume("ct", dtype=np.float32)
    (file,) = write_input_volumes([volume], tmp_path)
    back = read_volume_file(file, "ct again")
    assert back.GetScene() is scene
    assert back.GetName() == "ct again"
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(back), array)
    assert same_grid(ijk_to_ras(back), oblique_matrix())
    np.testing.assert_allclose(ijk_to_ras(back), oblique_matrix(), atol=1e-5)


def test_label_maps_are_written_on_the_volume_grid_and_read_back(scene, tmp_path: Path) -> None:
    volume, _ = add_volume("ct")
    label = np.zeros((5, 6, 7), np.uint8)
    label[1:3, 2:5, 3:6] = 2
    label[4, 0, 0] = 7
    write_volume_file(label_map_node(label, volume), tmp_path / "label.nrrd")
    np.testing.assert_array_equal(read_label_array(tmp_path / "label.nrrd", volume), label)
    other, _ = add_volume("other", matrix=oblique_matrix(spacing=(0.8, 0.9, 2.6)))
    with pytest.raises(VolumeError, match="does not lie on the voxel grid of volume 'other'"):
        read_label_array(tmp_path / "label.nrrd", other)
    with pytest.raises(VolumeError, match="uint8 or uint16"):
        label_map_node(label.astype(np.int32), volume)
    with pytest.raises(VolumeError, match="does not fit volume 'ct'"):
        label_map_node(label[:-1], volume)


def test_one_grid_allows_float32_rounding_only() -> None:
    matrix = oblique_matrix()
    assert same_grid(matrix, matrix.astype(np.float32).astype(np.float64))
    for row, column, delta in ((0, 3, 0.01), (0, 0, 0.001), (2, 2, -0.01)):
        moved = matrix.copy()
        moved[row, column] += delta
        assert not same_grid(matrix, moved), (row, column)
