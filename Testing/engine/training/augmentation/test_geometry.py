"""Rotation ranges, dummy-2D switch, mirror axes and initial patch sizes (method.md §5.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoseg.errors import AutoSegError
from autoseg.training.augmentation import augmentation_geometry, rotation_matrix

DEG30 = math.radians(30)


@pytest.mark.parametrize(
    ("patch", "initial"),
    [
        ((128, 128, 128), (205, 205, 205)),
        ((40, 56, 40), (73, 80, 64)),
        ((64, 192, 160), (178, 289, 200)),
        ((192, 160), (225, 225)),
    ],
)
def test_initial_patch_matches_the_verified_examples(patch, initial):
    assert augmentation_geometry(patch).initial_patch_size == initial


def test_3d_rotates_30_degrees_about_every_axis_and_mirrors_all_axes():
    geometry = augmentation_geometry([40, 56, 40])
    assert not geometry.dummy_2d
    assert geometry.rotation_range == ((-DEG30, DEG30),) * 3
    assert geometry.mirror_axes == (0, 1, 2)


def test_ratio_of_exactly_three_is_not_dummy_2d():
    assert not augmentation_geometry((64, 192, 160)).dummy_2d


def test_dummy_2d_rotates_in_plane_only_and_keeps_axis_0():
    geometry = augmentation_geometry((16, 192, 160))
    assert geometry.dummy_2d
    assert geometry.rotation_range == ((-math.pi, math.pi), (0.0, 0.0), (0.0, 0.0))
    assert geometry.initial_patch_size == (16, 225, 225)
    assert geometry.mirror_axes == (0, 1, 2)


def test_2d_rotates_180_degrees_unless_the_patch_is_elongated():
    square = augmentation_geometry((56, 40))  # ratio 1.4
    assert square.rotation_range == ((-math.pi, math.pi),)
    assert square.mirror_axes == (0, 1)
    assert square.initial_patch_size == (65, 65)
    elongated = augmentation_geometry((256, 128))  # ratio 2 > 1.5
    deg15 = math.radians(15)
    assert elongated.rotation_range == ((-deg15, deg15),)
    # 256·cos15 + 128·sin15 = 280.4 -> /0.85 = 329.9; axis 1 stays the patch: 128/0.85 = 150.6
    assert elongated.initial_patch_size == (329, 150)


@pytest.mark.parametrize("patch", [(40,), (4, 4, 4, 4), (0, 32, 32)])
def test_invalid_patch_sizes_are_reported(patch):
    with pytest.raises(AutoSegError, match="patch size"):
        augmentation_geometry(patch)


def test_rotation_matrices_are_proper_rotations_in_the_right_planes():
    matrix = rotation_matrix([0.3, -0.7, 1.1])
    np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(matrix) == pytest.approx(1.0)
    quarter = math.pi / 2
    # about axis 0: axis 2 -> axis 1 (right-handed), axis 0 fixed
    np.testing.assert_allclose(rotation_matrix([quarter, 0, 0]) @ [0, 0, 1], [0, -1, 0], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix([0, quarter, 0]) @ [1, 0, 0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix([0, 0, quarter]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(rotation_matrix([quarter]) @ [1, 0], [0, 1], atol=1e-12)
    with pytest.raises(ValueError, match="1 or 3 angles"):
        rotation_matrix([0.1, 0.2])
