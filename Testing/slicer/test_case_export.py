"""Export of a case from real MRML nodes: files, geometry, label values and every refusal."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from vtkmodules.util.numpy_support import vtk_to_numpy

from autoseg.integrity import verify_dataset
from AutoSegCoreLib import case_export
from AutoSegCoreLib.case_export import CaseExportError, NewLabelsNeedConfirmation, export_case
from AutoSegCoreLib.dataset_folder import DatasetInfo, add_labels, create_dataset, open_dataset
from AutoSegCoreLib.volume_io import VolumeError

SHAPE = (6, 7, 8)  # numpy (K, J, I)
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def oblique_ijk_to_ras() -> np.ndarray:
    """30 degrees about S with a flipped k axis (det -1), anisotropic spacing, odd origin."""
    angle = np.radians(30)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    matrix = np.eye(4)
    matrix[:3, :3] = rotation @ np.diag([1.0, 1.0, -1.0]) @ np.diag([0.8, 1.2, 2.5])
    matrix[:3, 3] = (-100.5, 20.25, -33.0)
    return matrix


def add_volume(
    name: str, array: np.ndarray, ijk_to_ras: np.ndarray
) -> slicer.vtkMRMLScalarVolumeNode:
    return slicer.util.addVolumeFromArray(array, ijk_to_ras, name=name)


def add_segmentation(
    scene: slicer.vtkMRMLScene, reference: slicer.vtkMRMLScalarVolumeNode, masks: dict
) -> slicer.vtkMRMLSegmentationNode:
    """One segment per (K, J, I) mask on ``reference``'s grid, in dict order, in shared layers.

    (``slicer.util.updateSegmentBinaryLabelmapFromArray`` would log an ERROR here: it needs the
    Colors module logic registered with the application logic, which the ``scene`` fixture skips.)
    """
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    matrix = vtk.vtkMatrix4x4()
    reference.GetIJKToRASMatrix(matrix)
    for name, mask in masks.items():
        image = slicer.vtkOrientedImageData()
        image.SetDimensions(*mask.shape[::-1])
        image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
        vtk_to_numpy(image.GetPointData().GetScalars())[:] = mask.astype(np.uint8).ravel()
        image.SetImageToWorldMatrix(matrix)
        assert node.AddSegmentFromBinaryLabelmapRepresentation(image, name)
    node.GetSegmentation().CollapseBinaryLabelmaps(False)  # as painting leaves them: shared layers
    return node


def box(*slices: slice, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[slices] = True
    return mask


@pytest.fixture
def dataset(tmp_path: Path) -> DatasetInfo:
    return create_dataset(tmp_path, 5, "Liver", ["CT"])


@pytest.fixture
def ct(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLScalarVolumeNode:
    array = np.random.default_rng(0).integers(-1000, 2000, SHAPE).astype(np.int16)
    return add_volume("CT", array, oblique_ijk_to_ras())


LIVER = box(slice(1, 4), slice(1, 5), slice(2, 6))
TUMOR = box(slice(4, 6), slice(2, 4), slice(1, 3))


def read(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def assert_lps_geometry(image: sitk.Image, ijk_to_ras: np.ndarray) -> None:
    spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    direction = RAS_TO_LPS @ ijk_to_ras[:3, :3] / spacing
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), RAS_TO_LPS @ ijk_to_ras[:3, 3], atol=1e-5)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), direction, atol=1e-6)
    assert np.linalg.det(direction) < 0


@pytest.mark.parametrize("ending", [".nii.gz", ".nrrd"])
def test_round_trip_keeps_voxels_and_geometry_in_lps(scene, tmp_path, ending):
    info = create_dataset(tmp_path, 1, "Liver", ["CT"], file_ending=ending)
    info = add_labels(info, ["liver", "tumor"])
    array = np.random.default_rng(1).integers(-1000, 2000, SHAPE).astype(np.int16)
    volume = add_volume("CT", array, oblique_ijk_to_ras())
    segmentation = add_segmentation(scene, volume, {"Tumor": TUMOR, "liver": LIVER})
    case = export_case(info, [volume], segmentation)
    assert case.case_id == "Liver_001"
    assert case.image_files == (info.folder / "imagesTr" / f"Liver_001_0000{ending}",)
    assert case.label_file == info.folder / "labelsTr" / f"Liver_001{ending}"
    assert case.label_values == {"Tumor": 2, "liver": 1}
    image_array, image = read(case.image_files[0])
    np.testing.assert_array_equal(image_array, array)
    assert_lps_geometry(image, oblique_ijk_to_ras())
    label_array, label = read(case.label_file)
    assert label.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(label_array, LIVER * 1 + TUMOR * 2)
    assert_lps_geometry(label, oblique_ijk_to_ras())
    assert case.dataset.case_ids == ("Liver_001",)
    assert json.loads((info.folder / "dataset.json").read_text())["numTraining"] == 1


def test_two_channels_are_written_in_channel_order(scene, tmp_path):
    info = create_dataset(tmp_path, 2, "Pro", ["T2", "ADC"])
    t2 = add_volume("T2", np.full(SHAPE, 7, np.int16), oblique_ijk_to_ras())
    adc = add_volume("ADC", np.full(SHAPE, 1.5, np.float32), oblique_ijk_to_ras())
    segmentation = add_segmentation(scene, t2, {"gland": LIVER})
    case = export_case(info, [t2, adc], segmentation, case_id="p7", allow_new_labels=True)
    assert [p.name for p in case.image_files] == ["p7_0000.nii.gz", "p7_0001.nii.gz"]
    assert set(read(case.image_files[0])[0].ravel()) == {7}
    assert set(read(case.image_files[1])[0].ravel()) == {1.5}


def test_volume_count_must_match_the_channels(scene, tmp_path, ct):
    info = create_dataset(tmp_path, 2, "Pro", ["T2", "ADC"])
    segmentation = add_segmentation(scene, ct, {"gland": LIVER})
    with pytest.raises(CaseExportError, match=r"2 channel\(s\) \(0: T2, 1: ADC\) but 1 volume"):
        export_case(info, [ct], segmentation)


def test_channels_on_different_grids_are_refused_naming_both(scene, tmp_path, ct):
    info = create_dataset(tmp_path, 2, "Pro", ["T2", "ADC"])
    shifted = oblique_ijk_to_ras()
    shifted[0, 3] += 0.01
    other = add_volume("ADC", np.zeros(SHAPE, np.int16), shifted)
    segmentation = add_segmentation(scene, ct, {"gland": LIVER})
    with pytest.raises(VolumeError, match="volumes 'ADC' and 'CT' do not share one voxel grid"):
        export_case(info, [ct, other], segmentation, allow_new_labels=True)
    assert list((info.folder / "imagesTr").iterdir()) == []


def test_label_values_stay_stable_when_segment_order_changes(scene, dataset, ct):
    first = add_segmentation(scene, ct, {"liver": LIVER, "tumor": TUMOR})
    one = export_case(dataset, [ct], first, allow_new_labels=True)
    second = add_segmentation(scene, ct, {"Tumor ": TUMOR, "LIVER": LIVER, "cyst": box(0, 0, 0)})
    two = export_case(dataset, [ct], second, allow_new_labels=True)
    assert one.label_values == {"liver": 1, "tumor": 2}
    assert two.label_values == {"Tumor ": 2, "LIVER": 1, "cyst": 3}
    np.testing.assert_array_equal(
        read(one.label_file)[0], read(two.label_file)[0] * (read(two.label_file)[0] < 3)
    )
    assert read(two.label_file)[0][0, 0, 0] == 3
    assert two.dataset.labels == {"background": 0, "liver": 1, "tumor": 2, "cyst": 3}
    assert two.dataset.case_ids == ("Liver_001", "Liver_002")


def test_new_labels_need_confirmation_and_nothing_is_written(scene, dataset, ct):
    segmentation = add_segmentation(scene, ct, {"liver": LIVER, "tumor": TUMOR})
    before = (dataset.folder / "dataset.json").read_bytes()
    with pytest.raises(NewLabelsNeedConfirmation, match="liver, tumor") as caught:
        export_case(dataset, [ct], segmentation)
    assert caught.value.new_names == ("liver", "tumor")
    assert isinstance(caught.value, ValueError)
    assert (dataset.folder / "dataset.json").read_bytes() == before
    assert list((dataset.folder / "imagesTr").iterdir()) == []
    case = export_case(dataset, [ct], segmentation, allow_new_labels=True)
    assert case.dataset.labels == {"background": 0, "liver": 1, "tumor": 2}


def test_overlapping_segments_are_refused_naming_pairs_and_counts(scene, dataset, ct):
    masks = {"a": box(1, slice(0, 3), 0), "b": box(1, slice(2, 5), 0), "c": box(1, slice(0, 5), 0)}
    segmentation = add_segmentation(scene, ct, masks)
    with pytest.raises(CaseExportError) as caught:
        export_case(dataset, [ct], segmentation, allow_new_labels=True)
    message = str(caught.value)
    assert '"a" and "b" (1 voxels); "a" and "c" (3 voxels); "b" and "c" (3 voxels)' in message
    assert open_dataset(dataset.folder).labels == {"background": 0}  # labels added only on success
    assert list((dataset.folder / "imagesTr").iterdir()) == []


def test_segment_beyond_the_volume_is_refused(scene, dataset, ct):
    bigger = add_volume("Big", np.zeros((8, 7, 8), np.int16), oblique_ijk_to_ras())
    inside, outside = box(1, 1, 1, shape=(8, 7, 8)), box(slice(5, 8), 2, 2, shape=(8, 7, 8))
    segmentation = add_segmentation(scene, bigger, {"inside": inside, "cut": outside})
    with pytest.raises(
        CaseExportError, match=r'"cut" \(2 voxels\) of "Segmentation" extend beyond'
    ):
        export_case(dataset, [ct], segmentation, allow_new_labels=True)


def test_segmentation_on_another_grid_matches_slicers_own_export(scene, dataset, ct):
    other_grid = np.diag([0.7, 0.9, 1.1, 1.0])
    ct_centre = (oblique_ijk_to_ras() @ (3.5, 3.0, 2.5, 1.0))[:3]
    other_grid[:3, 3] = ct_centre - (8 * 0.7, 7 * 0.9, 11 * 1.1)  # ball centre on the CT centre
    reference = add_volume("Other", np.zeros((20, 14, 16), np.int16), other_grid)
    ball = np.zeros((20, 14, 16), bool)
    ball[9:13, 5:9, 5:11] = True
    segmentation = add_segmentation(scene, reference, {"ball": ball})
    case = export_case(dataset, [ct], segmentation, allow_new_labels=True)
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segmentation.GetSegmentation().GetNthSegmentID(0))
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    assert logic.ExportSegmentsToLabelmapNode(segmentation, ids, labelmap, ct)
    expected = slicer.util.arrayFromVolume(labelmap)
    assert expected.sum() > 0
    np.testing.assert_array_equal(read(case.label_file)[0], expected)


def test_existing_case_is_refused_and_nothing_is_overwritten(scene, dataset, ct):
    segmentation = add_segmentation(scene, ct, {"liver": LIVER})
    case = export_case(dataset, [ct], segmentation, case_id="c1", allow_new_labels=True)
    files = [*case.image_files, case.label_file, dataset.folder / "dataset.json"]
    before = {p: p.read_bytes() for p in files}
    other = add_segmentation(scene, ct, {"liver": TUMOR})
    with pytest.raises(CaseExportError, match=r'Case "c1" already exists .* e\.g\. Liver_001'):
        export_case(dataset, [ct], other, case_id="c1")
    (dataset.folder / "labelsTr" / "c2.nii.gz").write_bytes(b"user file")
    with pytest.raises(CaseExportError, match='Case "c2" already exists'):
        export_case(dataset, [ct], other, case_id="c2")
    assert {p: p.read_bytes() for p in files} == before
    assert (dataset.folder / "labelsTr" / "c2.nii.gz").read_bytes() == b"user file"
    assert sorted(p.name for p in (dataset.folder / "imagesTr").iterdir()) == ["c1_0000.nii.gz"]


def test_failed_write_leaves_no_half_case(scene, dataset, ct, monkeypatch):
    segmentation = add_segmentation(scene, ct, {"liver": LIVER})
    original = case_export.write_volume_file

    def fail_on_the_label(node, path):
        if isinstance(node, slicer.vtkMRMLLabelMapVolumeNode):
            raise CaseExportError(f"{path}: disk full")
        original(node, path)

    monkeypatch.setattr(case_export, "write_volume_file", fail_on_the_label)
    with pytest.raises(CaseExportError, match="disk full"):
        export_case(dataset, [ct], segmentation, allow_new_labels=True)
    assert list((dataset.folder / "imagesTr").iterdir()) == []
    assert list((dataset.folder / "labelsTr").iterdir()) == []


def test_scene_and_nodes_are_left_unchanged(scene, dataset, ct):
    segmentation = add_segmentation(scene, ct, {"liver": LIVER, "tumor": TUMOR})
    nodes = [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())]
    segment_ids = [segmentation.GetSegmentation().GetNthSegmentID(i) for i in range(2)]
    export_case(dataset, [ct], segmentation, allow_new_labels=True)
    assert [scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())] == nodes
    assert [segmentation.GetSegmentation().GetNthSegmentID(i) for i in range(2)] == segment_ids
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 2
    assert ct.GetStorageNode() is None


def test_the_written_dataset_passes_the_engines_check(scene, dataset, ct):
    for masks in ({"liver": LIVER, "tumor": TUMOR}, {"tumor": TUMOR, "liver": LIVER}):
        export_case(dataset, [ct], add_segmentation(scene, ct, masks), allow_new_labels=True)
    problems = verify_dataset(dataset.folder, num_processes=1)
    assert problems == []


def test_transformed_nodes_are_refused_unless_the_transform_is_identity(scene, dataset, ct):
    segmentation = add_segmentation(scene, ct, {"liver": LIVER})
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "Shift")
    segmentation.SetAndObserveTransformNodeID(transform.GetID())
    export_case(dataset, [ct], segmentation, case_id="identity", allow_new_labels=True)
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)
    transform.SetMatrixTransformToParent(matrix)
    with pytest.raises(CaseExportError, match='"Segmentation" are under a non-identity transform'):
        export_case(dataset, [ct], segmentation)
    ct.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(CaseExportError, match='"CT", "Segmentation" are under'):
        export_case(dataset, [ct], segmentation)
    assert open_dataset(dataset.folder).case_ids == ("identity",)


def test_empty_segmentations_are_refused(scene, dataset, ct):
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Nothing")
    with pytest.raises(CaseExportError, match='"Nothing" has no segments'):
        export_case(dataset, [ct], node)
    empty = add_segmentation(scene, ct, {"liver": np.zeros(SHAPE, bool)})
    with pytest.raises(CaseExportError, match="is empty inside the volume"):
        export_case(dataset, [ct], empty, allow_new_labels=True)


def test_label_values_from_256_on_are_written_as_uint16(scene, tmp_path, ct):
    info = create_dataset(tmp_path, 3, "Many", ["CT"])
    info = add_labels(info, [f"s{i}" for i in range(1, 301)])
    case = export_case(info, [ct], add_segmentation(scene, ct, {"s300": LIVER}))
    array, image = read(case.label_file)
    assert image.GetPixelID() == sitk.sitkUInt16
    np.testing.assert_array_equal(array, LIVER * 300)


def test_region_and_explicit_case_datasets_are_refused(scene, tmp_path, ct):
    folder = create_dataset(tmp_path, 4, "R", ["CT"]).folder
    data = json.loads((folder / "dataset.json").read_text())
    segmentation = add_segmentation(scene, ct, {"a": LIVER})
    for extra, expected in (
        (
            {
                "labels": {"background": 0, "a": 1, "b": 2, "ab": [1, 2]},
                "regions_class_order": [1, 2, 3],
            },
            "region labels",
        ),
        ({"labels": {"background": 0, "a": 1}, "dataset": {}}, 'lists its cases under "dataset"'),
    ):
        (folder / "dataset.json").write_text(json.dumps({**data, **extra}))
        with pytest.raises(CaseExportError, match=expected):
            export_case(open_dataset(folder), [ct], segmentation)


def test_a_closed_surface_segmentation_is_converted_and_exported(scene, dataset, ct):
    sphere = vtk.vtkSphereSource()
    sphere.SetCenter(*(oblique_ijk_to_ras() @ (3.5, 3.0, 2.5, 1.0))[:3])
    sphere.SetRadius(2.0)
    sphere.Update()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Surface")
    node.SetReferenceImageGeometryParameterFromVolumeNode(ct)
    node.AddSegmentFromClosedSurfaceRepresentation(sphere.GetOutput(), "ball")
    case = export_case(dataset, [ct], node, allow_new_labels=True)
    values, counts = np.unique(read(case.label_file)[0], return_counts=True)
    assert values.tolist() == [0, 1]
    assert 2 <= counts[1] <= 20  # 33.5 mm³ of sphere / 2.4 mm³ voxels: about 14
