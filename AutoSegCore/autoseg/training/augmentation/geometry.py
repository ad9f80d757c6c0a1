"""Rotation ranges, mirror axes and the enlarged ("initial") patch of the training augmentation.

The patch sampler crops an *initial* patch larger than the network's patch so that the spatial
augmentation can rotate (and zoom) and then centre-crop the final patch without sampling outside
the crop most of the time (method.md §5.6):

- 3D: ±30° about every axis; mirror axes (0, 1, 2).
- 3D "dummy 2D" (``max(patch) / patch[0] > 3``, i.e. few slices along axis 0): the data is rotated
  in-plane only (about axis 0) by ±180°, because rotating across the thick axis would mostly
  interpolate between distant slices. Axis 0 of the initial patch is not enlarged.
- 2D: ±180° in-plane, or only ±15° when the patch is elongated (``max / min > 1.5``): a large
  rotation of an elongated patch would need a much bigger crop and mostly show padding.

The initial patch size reproduces the reference rule exactly: the *patch-size vector* (not its
bounding box) is rotated by the largest angle (capped at 90°) about each axis separately, the
absolute components are maxed with the patch itself, divided by 0.85 and truncated. Rotating the
vector gives smaller sizes than the true bounding extent of the rotated box (e.g. 73x80x64 instead
of 73x80x73 for 40x56x40); the verified sizes in method.md (128³ -> 205³, 40x56x40 -> 73x80x64,
64x192x160 -> 178x289x200, 2D 192x160 -> 225x225) only come out with the vector rule, so we keep
it: the few voxels that a large combined rotation samples outside the crop become padding, exactly
as in the method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from autoseg.errors import AutoSegError

DUMMY_2D_ANISOTROPY = 3.0
ELONGATED_2D = 1.5
ROTATION_3D = math.radians(30.0)
ROTATION_2D = math.pi
ROTATION_2D_ELONGATED = math.radians(15.0)
SMALLEST_SCALE = 0.85


@dataclass(frozen=True)
class AugmentationGeometry:
    """Per-configuration constants of the spatial augmentation.

    ``rotation_range`` holds one ``(low, high)`` range in radians per rotation axis: three entries
    (about axes 0, 1, 2) for 3D configurations - in dummy-2D only the first is non-zero - and one
    (in-plane) entry for 2D configurations.
    """

    rotation_range: tuple[tuple[float, float], ...]
    dummy_2d: bool
    mirror_axes: tuple[int, ...]
    initial_patch_size: tuple[int, ...]


def rotation_matrix(angles: Sequence[float]) -> np.ndarray:
    """Right-handed rotation: one angle gives a 2x2 matrix, three give ``Rx(a0) @ Ry(a1) @ Rz(a2)``.

    ``Rx`` rotates within the plane of axes (1, 2), ``Ry`` within (0, 2) and ``Rz`` within (0, 1).
    """
    if len(angles) == 1:
        c, s = math.cos(angles[0]), math.sin(angles[0])
        return np.array([[c, -s], [s, c]])
    if len(angles) != 3:
        raise ValueError(f"rotation_matrix needs 1 or 3 angles, got {len(angles)}")
    matrix = np.eye(3)
    for axis, angle in enumerate(angles):
        c, s = math.cos(angle), math.sin(angle)
        i, j = [a for a in range(3) if a != axis]
        rot = np.eye(3)
        rot[i, i], rot[j, j] = c, c
        # The sign pattern of a right-handed rotation about y is flipped relative to x and z.
        rot[i, j], rot[j, i] = (s, -s) if axis == 1 else (-s, s)
        matrix = matrix @ rot
    return matrix


def _enlarged(patch: tuple[int, ...], angle: float) -> tuple[int, ...]:
    """Initial patch for ``patch`` rotated by ``angle`` about each axis (vector rule, see above)."""
    angle = min(abs(angle), math.pi / 2)
    size = np.asarray(patch, dtype=np.float64)
    extent = size.copy()
    n_axes = 1 if len(patch) == 2 else 3
    for axis in range(n_axes):
        angles = [0.0] * n_axes
        angles[axis] = angle
        rotated = rotation_matrix(angles).T @ size
        extent = np.maximum(extent, np.abs(rotated))
    return tuple(int(v) for v in extent / SMALLEST_SCALE)


def _check_patch(patch: tuple[int, ...]) -> None:
    if len(patch) not in (2, 3) or min(patch) < 1:
        raise AutoSegError(
            f"patch size {list(patch)}: must have 2 or 3 positive edge lengths. "
            "Fix: correct patch_size in the plans file or re-run planning."
        )


def augmentation_geometry(patch_size: Sequence[int]) -> AugmentationGeometry:
    """Rotation range, dummy-2D switch, mirror axes and initial patch for a network patch size."""
    patch = tuple(int(p) for p in patch_size)
    _check_patch(patch)
    if len(patch) == 2:
        elongated = max(patch) / min(patch) > ELONGATED_2D
        angle = ROTATION_2D_ELONGATED if elongated else ROTATION_2D
        return AugmentationGeometry(((-angle, angle),), False, (0, 1), _enlarged(patch, angle))
    if max(patch) / patch[0] > DUMMY_2D_ANISOTROPY:
        in_plane = (patch[0], *_enlarged(patch[1:], ROTATION_2D))
        rotation = ((-ROTATION_2D, ROTATION_2D), (0.0, 0.0), (0.0, 0.0))
        return AugmentationGeometry(rotation, True, (0, 1, 2), in_plane)
    rotation = ((-ROTATION_3D, ROTATION_3D),) * 3
    return AugmentationGeometry(rotation, False, (0, 1, 2), _enlarged(patch, ROTATION_3D))
