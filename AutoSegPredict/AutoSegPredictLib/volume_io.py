"""Write the input volumes for ``autoseg predict`` exactly as Slicer holds them.

Each volume is written by Slicer's own storage node (which converts RAS to the files' LPS) in the
volume's own IJK-to-RAS geometry, so the engine predicts on the voxels the user sees, without any
resampling. Channels of one case must share one voxel grid: the engine stacks them voxel by voxel.

Parent transforms: a volume may sit under a (non-identity, even non-linear) transform. The files
are written in the volume's *local* coordinates (the transform is not hardened) and the
segmentation is later put under the same transform, so the result lines up with the input on
screen without resampling the image. All channels must therefore share one parent transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import slicer
import vtk

from autoseg.errors import AutoSegError

# What vtkMRMLVolumeArchetypeStorageNode writes (via ITK) and the engine reads back.
WRITABLE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
_COMPRESSED = (".nii.gz", ".nrrd", ".mha")
# IJK-to-RAS entries (mm) within this are the same grid: NIfTI headers store float32 values.
_GRID_TOLERANCE = 1e-4


class VolumeError(AutoSegError, ValueError):
    """An input volume the engine cannot use; the message names it and how to fix it."""


def as_volume_list(volume_nodes: object) -> list:
    """One volume node or a sequence of them, as a list (the console API accepts both)."""
    if isinstance(volume_nodes, slicer.vtkMRMLNode):
        return [volume_nodes]
    if isinstance(volume_nodes, Sequence) and not isinstance(volume_nodes, str):
        return list(volume_nodes)
    raise VolumeError(
        f"expected a volume node or a list of volume nodes, got {type(volume_nodes).__name__}."
    )


def ijk_to_ras(volume_node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    """The node's own IJK-to-RAS matrix (parent transforms not applied) as a 4x4 array."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _check_volume(node: object, index: int) -> None:
    if not isinstance(node, slicer.vtkMRMLScalarVolumeNode):
        what = "nothing" if node is None else type(node).__name__
        raise VolumeError(
            f"channel {index}: expected a scalar volume node, got {what}. "
            "Choose an image volume for every channel of the model."
        )
    image = node.GetImageData()
    if image is None or image.GetNumberOfPoints() == 0:
        raise VolumeError(f"volume '{node.GetName()}' holds no image data. Load the image first.")
    components = image.GetNumberOfScalarComponents()
    if components != 1:
        raise VolumeError(
            f"volume '{node.GetName()}' has {components} components per voxel (colour or vector "
            "image); the model needs one. Convert it with the 'Vector to Scalar Volume' module."
        )


def _parent_transform_id(node: slicer.vtkMRMLVolumeNode) -> str | None:
    transform = node.GetParentTransformNode()
    return None if transform is None else transform.GetID()


def _check_same_grid(first: slicer.vtkMRMLVolumeNode, other: slicer.vtkMRMLVolumeNode) -> None:
    """Every channel must lie on the first channel's voxel grid, under the same transform."""
    names = f"'{other.GetName()}' and '{first.GetName()}'"
    if _parent_transform_id(first) != _parent_transform_id(other):
        raise VolumeError(
            f"volumes {names} are under different parent transforms. Put all channels under the "
            "same transform (or harden the transforms and resample onto the first volume)."
        )
    dims = (first.GetImageData().GetDimensions(), other.GetImageData().GetDimensions())
    same_matrix = np.allclose(ijk_to_ras(first), ijk_to_ras(other), rtol=0, atol=_GRID_TOLERANCE)
    if dims[0] != dims[1] or not same_matrix:
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
        _check_volume(node, index)
    for node in volume_nodes[1:]:
        _check_same_grid(volume_nodes[0], node)


def _check_ending(file_ending: str) -> None:
    if file_ending not in WRITABLE_ENDINGS:
        raise VolumeError(
            f"the model reads '{file_ending}' files, which Slicer cannot write for it (it writes "
            f"{', '.join(WRITABLE_ENDINGS)}). Use a model trained on one of those formats."
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
    _check_ending(file_ending)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for channel, node in enumerate(nodes):
        path = folder / f"{case_id}_{channel:04d}{file_ending}"
        storage = slicer.vtkMRMLVolumeArchetypeStorageNode()  # never added to the scene
        storage.SetFileName(str(path))
        storage.SetUseCompression(file_ending in _COMPRESSED)
        if storage.WriteData(node) != 1 or not path.is_file():
            raise VolumeError(
                f"could not write volume '{node.GetName()}' to {path}. Check that the folder is "
                "writable and the disk is not full."
            )
        files.append(path)
    return files
