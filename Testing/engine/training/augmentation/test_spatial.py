"""Rotation / scaling / centre crop (step 2 of §5.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoseg.training.augmentation import (
    AugmentationGeometry,
    augmentation_geometry,
    rotation_matrix,
)
from autoseg.training.augmentation.spatial import SpatialTransform, resample_patch

QUARTER = math.pi / 2


def _fixed(rotation_range, dummy_2d=False, initial=(0, 0, 0)) -> AugmentationGeometry:
    return AugmentationGeometry(tuple(rotation_range), dummy_2d, (0, 1, 2), initial)


def _batch(shape, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(2, channels, *shape)).astype(np.float32)
    seg = rng.integers(-1, 3, size=(2, 1, *shape)).astype(np.int16)
    return data, seg


def test_without_rotation_or_scaling_the_patch_is_an_exact_centre_crop():
    data, seg = _batch((13, 10, 9))
    spatial = SpatialTransform(
        (8, 6, 4), augmentation_geometry((8, 6, 4)), p_rotation=0, p_scaling=0
    )
    out = spatial(data=data.copy(), seg=seg.copy())
    # (13 - 8) // 2 = 2, (10 - 6) // 2 = 2, (9 - 4) // 2 = 2
    np.testing.assert_array_equal(out["data"], data[:, :, 2:10, 2:8, 2:6])
    np.testing.assert_array_equal(out["seg"], seg[:, :, 2:10, 2:8, 2:6])
    assert out["data"].dtype == np.float32
    assert out["seg"].dtype == np.int16


def test_identity_resampling_reproduces_the_crop():
    data, seg = _batch((11, 12, 9), channels=2)
    crop_data, crop_seg = resample_patch(data[0], seg[0], (6, 7, 4), None)
    out_data, out_seg = resample_patch(data[0], seg[0], (6, 7, 4), np.eye(3))
    np.testing.assert_allclose(out_data, crop_data, atol=1e-4)
    np.testing.assert_array_equal(out_seg, crop_seg)


def test_rotation_and_scaling_fire_at_their_probabilities(binomial):
    spatial = SpatialTransform((40, 40), augmentation_geometry((40, 40)))
    n = 4000
    matrices = [spatial.draw_matrix() for _ in range(n)]
    fired = [m for m in matrices if m is not None]
    binomial(len(fired), n, 1 - 0.8 * 0.8)
    factors = np.array([math.sqrt(abs(np.linalg.det(m))) for m in fired])
    scaled = ~np.isclose(factors, 1.0)
    binomial(int(scaled.sum()), n, 0.2)
    angles = np.array([math.atan2(m[1, 0], m[0, 0]) for m in fired])
    binomial(int((angles != 0).sum()), n, 0.2)
    # scale factor U(0.7, 1.4): range and mean (uniform sd = 0.7 / sqrt(12))
    assert factors[scaled].min() >= 0.7
    assert factors[scaled].max() <= 1.4
    sd_mean = 0.7 / math.sqrt(12) / math.sqrt(scaled.sum())
    assert abs(factors[scaled].mean() - 1.05) < 4 * sd_mean
    # 2D rotation U(-180°, 180°): both signs, spread over the full range
    rotated = angles[angles != 0]
    assert rotated.min() < -0.9 * math.pi
    assert rotated.max() > 0.9 * math.pi


def test_3d_rotation_angles_stay_within_30_degrees():
    spatial = SpatialTransform((8, 8, 8), augmentation_geometry((8, 8, 8)), p_scaling=0)
    spatial.p_rotation = 1.0
    for _ in range(200):
        matrix = spatial.draw_matrix()
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-9)
        # Rx(a)·Ry(b)·Rz(c): the (0, 2) entry is sin(b), and the first row gives c
        b = math.asin(matrix[0, 2])
        c = math.atan2(-matrix[0, 1], matrix[0, 0])
        a = math.atan2(-matrix[1, 2], matrix[2, 2])
        assert max(abs(a), abs(b), abs(c)) <= math.radians(30) + 1e-9


def test_rotation_by_a_known_angle_moves_a_marker():
    # 90° about axis 0: input offset (0, 0, +5) from the centre ends up at output offset (0, +5, 0)
    shape = (21, 21, 21)
    data = np.zeros((1, 1, *shape), dtype=np.float32)
    seg = np.zeros((1, 1, *shape), dtype=np.int16)
    data[0, 0, 10, 10, 15] = 7.0
    seg[0, 0, 9:12, 9:12, 14:17] = 2
    geometry = _fixed([(QUARTER, QUARTER), (0.0, 0.0), (0.0, 0.0)], initial=shape)
    spatial = SpatialTransform((11, 11, 11), geometry, p_rotation=1.0, p_scaling=0.0)
    out = spatial(data=data, seg=seg)
    assert np.unravel_index(np.argmax(out["data"][0, 0]), (11, 11, 11)) == (5, 10, 5)
    assert out["data"].max() == pytest.approx(7.0, abs=1e-3)
    labelled = np.argwhere(out["seg"][0, 0] == 2)
    np.testing.assert_array_equal(labelled.min(axis=0), [4, 9, 4])
    np.testing.assert_array_equal(labelled.max(axis=0), [6, 10, 6])  # row 11 is outside


def test_2d_rotation_moves_a_marker_the_same_way():
    data = np.zeros((1, 9, 9), dtype=np.float32)
    data[0, 4, 7] = 1.0
    seg = (data > 0).astype(np.int16)
    out_data, out_seg = resample_patch(data, seg, (9, 9), rotation_matrix([QUARTER]))
    assert np.argwhere(out_data[0] > 0.5).tolist() == [[7, 4]]
    assert np.argwhere(out_seg[0] == 1).tolist() == [[7, 4]]


def test_zooming_out_past_the_border_gives_minus_one_labels_and_zero_image():
    data = np.ones((1, 1, 10, 10), dtype=np.float32)
    seg = np.ones((1, 1, 10, 10), dtype=np.int16)
    geometry = AugmentationGeometry(((0.0, 0.0),), False, (0, 1), (10, 10))
    spatial = SpatialTransform((10, 10), geometry, p_rotation=0.0, p_scaling=1.0)
    spatial.scaling_range = (1.4, 1.4)
    out = spatial(data=data, seg=seg)
    # offsets ±4.5 * 1.4 = ±6.3 around the centre 4.5: the outer ring samples outside
    assert set(np.unique(out["seg"])) == {-1, 1}
    assert out["seg"][0, 0, 0, 0] == -1
    assert out["seg"][0, 0, 5, 5] == 1
    assert out["data"][0, 0, 0, 0] == 0.0
    assert out["data"][0, 0, 5, 5] == pytest.approx(1.0)
    # labels stay labels: the image border blends, the seg is never fractional or invented
    np.testing.assert_array_equal(out["seg"] == -1, out["data"] < 0.5)


def test_only_labels_present_are_produced():
    data, seg = _batch((20, 20, 20))
    seg[seg == 1] = 5
    matrix = rotation_matrix([0.4, 0.2, -0.3]) * 1.2
    _, out = resample_patch(data[0], seg[0], (10, 10, 10), matrix)
    assert set(np.unique(out)) <= {-1, 0, 2, 5}
    assert out.dtype == np.int16


def test_dummy_2d_transforms_every_slice_alike_and_keeps_axis_0():
    rng = np.random.default_rng(3)
    shape = (4, 30, 30)
    data = rng.normal(size=(1, 2, *shape)).astype(np.float32)
    seg = rng.integers(0, 3, size=(1, 1, *shape)).astype(np.int16)
    geometry = _fixed([(0.7, 0.7), (0.0, 0.0), (0.0, 0.0)], dummy_2d=True, initial=shape)
    spatial = SpatialTransform((4, 20, 20), geometry, p_rotation=1.0, p_scaling=0.0)
    out = spatial(data=data.copy(), seg=seg.copy())
    assert out["data"].shape == (1, 2, 4, 20, 20)
    matrix = rotation_matrix([0.7])
    for x in range(4):
        slice_data, slice_seg = resample_patch(data[0, :, x], seg[0, :, x], (20, 20), matrix)
        np.testing.assert_allclose(out["data"][0, :, x], slice_data, atol=1e-5)
        np.testing.assert_array_equal(out["seg"][0, :, x], slice_seg)


def test_wrong_dimensionality_and_too_small_inputs_are_rejected():
    spatial = SpatialTransform(
        (8, 8, 8), augmentation_geometry((8, 8, 8)), p_rotation=0, p_scaling=0
    )
    data, seg = _batch((8, 8))
    with pytest.raises(ValueError, match="needs"):
        spatial(data=data, seg=seg)
    data, seg = _batch((8, 8, 6))
    with pytest.raises(ValueError, match="smaller than the output patch"):
        spatial(data=data, seg=seg)
