"""Volumes and label maps between MRML nodes and files, in both directions, for both modules.

One definition of what "the same voxel grid" means and of how files are written and read back,
because the annotation loop needs both directions in both modules: Predict writes input volumes
and reads the prediction back, Train writes cases (volumes + label map) and loads them back.

- Writing uses Slicer's own storage node (RAS to the files' LPS handled by it), in the node's own
  IJK-to-RAS geometry (a parent transform is *not* hardened), so the files hold the voxels the
  user sees, without resampling. Storage nodes are never added to the scene.
- Reading uses SimpleITK, which never flips a left-handed grid (Slicer's archetype reader does by
  default), and puts the voxels on the exact geometry of the node they belong to: NIfTI headers
  store float32 values, so a file's geometry is compared with a tolerance, never copied.
- A volume is usable as a channel when it is a scalar volume with voxels and one component; the
  channels of one case share one grid and one parent transform (the engine stacks them voxel by
  voxel).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtkmodules.util.numpy_support import numpy_to_vtk

from autoseg.errors import AutoSegError

#: What vtkMRMLVolumeArchetypeStorageNode writes (via ITK) and the engine reads back.
WRITABLE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_COMPRESSED = (".nii.gz", ".nrrd", ".mha")
#: Largest difference of two IJK-to-RAS entries (mm, or direction units) that is still one grid:
#: NIfTI headers hold float32 values, so a grid read back from a file differs by about 1e-5.
GRID_TOLERANCE = 1e-4
#: Origins of a file and a node further apart than this (mm) are different grids.
ORIGIN_TOLERANCE_MM = 1e-3
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class VolumeError(AutoSegError, ValueError):
    """A volume or label file that cannot be used; the message names it and how to fix it."""


def as_array(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    """A VTK 4x4 matrix as a numpy array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras_matrix(volume_node: slicer.vtkMRMLVolumeNode) -> vtk.vtkMatrix4x4:
    """The node's own IJK-to-RAS matrix (parent transforms not applied), as VTK wants it."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return matrix


def ijk_to_ras(volume_node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The node's own IJK-to-RAS matrix (parent transforms not applied) as a 4x4 array."""
    return as_array(ijk_to_ras_matrix(volume_node))


def file_ijk_to_ras(image: sitk.Image | sitk.ImageFileReader) -> np.ndarray:
    """The IJK-to-RAS matrix of a SimpleITK image or header (files and SimpleITK are LPS)."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = _LPS_TO_RAS @ direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = _LPS_TO_RAS @ np.array(image.GetOrigin())
    return matrix


def same_grid(first: np.ndarray, second: np.ndarray) -> bool:
    """Two IJK-to-RAS matrices describe one grid: same axes and spacing, same origin."""
    scale = np.linalg.norm(first[:3, :3], axis=0)
    axes = np.allclose(first[:3, :3] / scale, second[:3, :3] / scale, rtol=0, atol=GRID_TOLERANCE)
    spacing = np.allclose(np.linalg.norm(second[:3, :3], axis=0), scale, atol=GRID_TOLERANCE)
    origin = np.allclose(first[:3, 3], second[:3, 3], rtol=0, atol=ORIGIN_TOLERANCE_MM)
    return bool(axes and spacing and origin)


def as_volume_list(volume_nodes: object) -> list:
    """One volume node or a sequence of them, as a list (the console API accepts both)."""
    if isinstance(volume_nodes, slicer.vtkMRMLNode):
        return [volume_nodes]
    if isinstance(volume_nodes, Sequence) and not isinstance(volume_nodes, str):
        return list(volume_nodes)
    raise VolumeError(
        f"expected a volume node or a list of volume nodes, got {type(volume_nodes).__name__}."
    )


def check_channel_volume(node: object, index: int) -> None:
    """Raise VolumeError unless ``node`` is a scalar volume with voxels and one component."""
    if not isinstance(node, slicer.vtkMRMLScalarVolumeNode):
        what = "nothing" if node is None else type(node).__name__
        raise VolumeError(
            f"channel {index}: expected a scalar volume node, got {what}. "
            "Choose an image volume for every channel."
        )
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise VolumeError(f"volume '{node.GetName()}' holds no image data. Load the image first.")
    components = image.GetNumberOfScalarComponents()
    if components != 1:
        raise VolumeError(
            f"volume '{node.GetName()}' has {components} components per voxel (colour or vector "
            "image); one is needed. Convert it with the 'Vector to Scalar Volume' module."
        )


def _parent_transform_id(node: slicer.vtkMRMLVolumeNode) -> str | None:
    transform = node.GetParentTransformNode()
    return None if transform is None else transform.GetID()


def check_same_grid(first: slicer.vtkMRMLVolumeNode, other: slicer.vtkMRMLVolumeNode) -> None:
    """Every channel must lie on the first channel's voxel grid, under the same transform."""
    names = f"'{other.GetName()}' and '{first.GetName()}'"
    if _parent_transform_id(first) != _parent_transform_id(other):
        raise VolumeError(
            f"volumes {names} are under different parent transforms. Put all channels under the "
            "same transform (or harden the transforms and resample onto the first volume)."
        )
    dims = (first.GetImageData().GetDimensions(), other.GetImageData().GetDimensions())
    if dims[0] != dims[1] or not same_grid(ijk_to_ras(first), ijk_to_ras(other)):
        raise VolumeError(
            f"volumes {names} do not share one voxel grid (size {dims[1]} vs {dims[0]}, or "
            "different spacing, origin or axes). Resample every channel onto the first volume, "
            "e.g. with the 'Resample Scalar/Vector/DWI Volume' module."
        )


def check_input_volumes(volume_nodes: Sequence[object]) -> None:
    """Raise VolumeError unless the volumes are usable channels of one case."""
    if not volume_nodes:
        raise VolumeError("no input volume given. Choose the volume to segment.")
    for index, node in enumerate(volume_nodes):
        check_channel_volume(node, index)
    for node in volume_nodes[1:]:
        check_same_grid(volume_nodes[0], node)


def check_file_ending(file_ending: str) -> None:
    """Raise VolumeError unless Slicer can write ``file_ending`` for the engine."""
    if file_ending not in WRITABLE_ENDINGS:
        raise VolumeError(
            f"'{file_ending}' files cannot be written from Slicer (it writes "
            f"{', '.join(WRITABLE_ENDINGS)}). Use a dataset or model with one of those formats."
        )


def write_volume_file(node: slicer.vtkMRMLVolumeNode, path: Path) -> None:
    """Slicer's own writer, in the node's local geometry; compressed where the format allows."""
    path = Path(path)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()  # never added to the scene
    storage.SetFileName(str(path))
    storage.SetUseCompression(any(path.name.endswith(e) for e in _COMPRESSED))
    if storage.WriteData(node) != 1 or not path.is_file():
        raise VolumeError(
            f"could not write volume '{node.GetName()}' to {path}. Check that the folder is "
            "writable and the disk is not full."
        )


def write_input_volumes(
    volume_nodes: Sequence[slicer.vtkMRMLScalarVolumeNode],
    folder: Path,
    *,
    file_ending: str = ".nii.gz",
    case_id: str = "case",
) -> list[Path]:
    """Write ``CASE_0000<ending>``, ``CASE_0001<ending>``... (one file per channel, in order).

    The volumes are checked first (one component, one shared grid and parent transform), so a
    wrong choice fails before any file is written. Returns the written files.
    """
    nodes = as_volume_list(volume_nodes)
    check_input_volumes(nodes)
    check_file_ending(file_ending)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for channel, node in enumerate(nodes):
        path = folder / f"{case_id}_{channel:04d}{file_ending}"
        write_volume_file(node, path)
        files.append(path)
    return files


def label_map_node(
    label: np.ndarray, reference: slicer.vtkMRMLScalarVolumeNode
) -> slicer.vtkMRMLLabelMapVolumeNode:
    """A label map node outside any scene, on ``reference``'s grid, holding ``label``.

    ``label`` is (K, J, I) or flat in that order, uint8 or uint16 (what label files hold).
    """
    if label.dtype not in (np.uint8, np.uint16):
        raise VolumeError(f"label maps hold uint8 or uint16 values, got {label.dtype}.")
    image = vtk.vtkImageData()
    image.SetExtent(reference.GetImageData().GetExtent())
    if label.size != image.GetNumberOfPoints():
        raise VolumeError(
            f"a label map of {label.size} voxels does not fit volume '{reference.GetName()}' "
            f"({image.GetNumberOfPoints()} voxels)."
        )
    scalars = numpy_to_vtk(np.ascontiguousarray(label).ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    node = slicer.vtkMRMLLabelMapVolumeNode()
    node.SetIJKToRASMatrix(ijk_to_ras_matrix(reference))
    node.SetAndObserveImageData(image)
    return node


def read_image(path: Path) -> sitk.Image:
    """A 3D image file with one value per voxel, or a VolumeError saying what it is instead."""
    path = Path(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise VolumeError(f"{path}: cannot be read ({error}).") from error
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise VolumeError(
            f"{path}: expected a 3D image with one value per voxel, got "
            f"{image.GetDimension()}D with {image.GetNumberOfComponentsPerPixel()} component(s)."
        )
    return image


def read_header(path: Path) -> sitk.ImageFileReader:
    """The file's size and geometry without reading its voxels (``GetSize``, ``GetSpacing``...)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise VolumeError(f"{path}: cannot be read ({error}).") from error
    return reader


def check_file_on_grid(
    image: sitk.Image | sitk.ImageFileReader, reference: slicer.vtkMRMLVolumeNode, path: Path
) -> None:
    """Raise VolumeError unless the image (or header) ``path`` lies on ``reference``'s grid."""
    dims = tuple(reference.GetImageData().GetDimensions())
    size = tuple(image.GetSize())
    if size != dims or not same_grid(ijk_to_ras(reference), file_ijk_to_ras(image)):
        raise VolumeError(
            f"{path}: the image (size {size}) does not lie on the voxel grid of volume "
            f"'{reference.GetName()}' (size {dims}). Write it on that volume's grid (segment or "
            "load the volume again); if it persists, report it with both files."
        )


def read_label_array(label_file: Path, reference_volume: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The label file's voxels as a (K, J, I) integer array on ``reference_volume``'s grid."""
    label_file = Path(label_file)
    image = read_image(label_file)
    check_file_on_grid(image, reference_volume, label_file)
    array = sitk.GetArrayFromImage(image)
    if not np.issubdtype(array.dtype, np.integer) or (array.size and array.min() < 0):
        raise VolumeError(
            f"{label_file}: holds {array.dtype} values (min {array.min()}); a label file holds "
            "non-negative integers. Was a probability or image file chosen?"
        )
    return array


def read_volume_file(path: Path, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """A new scalar volume node in the scene with the file's exact voxels and geometry (no flip)."""
    image = read_image(path)
    array = sitk.GetArrayFromImage(image)
    if array.dtype in (np.int64, np.uint64):
        array = array.astype(np.float64)  # Slicer's volumes refuse 64-bit integers
    return slicer.util.addVolumeFromArray(array, file_ijk_to_ras(image), name=name)
