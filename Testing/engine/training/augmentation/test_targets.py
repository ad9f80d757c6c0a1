"""Image masking, region targets and deep-supervision downsampling (steps 12, 15, 16)."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.training.augmentation import downsample_seg
from autoseg.training.augmentation.targets import MaskImage, RegionTargets, SegToTargets


def test_downsampling_takes_the_nearest_voxel_centre():
    seg = np.arange(8, dtype=np.int16).reshape(1, 1, 8, 1) * np.ones((1, 1, 1, 4), np.int16)
    full, half, quarter = downsample_seg(seg, [(1.0, 1.0), (0.5, 0.5), (0.25, 0.25)])
    assert full is seg
    # index i takes floor((i + 0.5) / scale): 0.5 -> 1, 3, 5, 7; 0.25 -> 2, 6
    np.testing.assert_array_equal(half[0, 0, :, 0], [1, 3, 5, 7])
    np.testing.assert_array_equal(quarter[0, 0, :, 0], [2, 6])
    assert half.shape == (1, 1, 4, 2)
    assert quarter.shape == (1, 1, 2, 1)
    assert half.dtype == np.int16


def test_downsampling_handles_anisotropic_scales_and_checks_dimensions():
    seg = np.zeros((2, 3, 8, 12, 6), dtype=np.uint8)
    out = downsample_seg(seg, [(1, 1, 1), (1, 0.5, 0.5), (0.5, 0.25, 0.5)])
    assert [o.shape for o in out] == [(2, 3, 8, 12, 6), (2, 3, 8, 6, 3), (2, 3, 4, 3, 3)]
    with pytest.raises(ValueError, match="does not match"):
        downsample_seg(seg, [(0.5, 0.5)])


def test_seg_to_targets_without_deep_supervision_keeps_one_array():
    seg = np.zeros((2, 1, 4, 4), dtype=np.int16)
    out = SegToTargets(None)(data=np.zeros((2, 1, 4, 4), np.float32), seg=seg, keys=["a", "b"])
    assert out["target"] is seg
    assert "seg" not in out
    assert out["keys"] == ["a", "b"]


def test_mask_image_zeroes_only_the_masked_channels_outside_the_mask():
    data = np.ones((2, 3, 4, 4), dtype=np.float32)
    seg = np.zeros((2, 1, 4, 4), dtype=np.int16)
    seg[0, 0, :2] = -1
    out = MaskImage((0, 2))(data=data, seg=seg)["data"]
    assert np.all(out[0, [0, 2], :2] == 0)
    assert np.all(out[0, [0, 2], 2:] == 1)
    assert np.all(out[0, 1] == 1)
    assert np.all(out[1] == 1)


def test_region_targets_are_uint8_channels_with_the_ignore_label_last():
    seg = np.array([0, 1, 2, 3, 4], dtype=np.int16).reshape(1, 1, 5, 1)
    out = RegionTargets(((1, 2, 3), (2, 3), (3,)), ignore_label=4)(seg=seg)["seg"]
    assert out.dtype == np.uint8
    assert out.shape == (1, 4, 5, 1)
    np.testing.assert_array_equal(
        out[0, :, :, 0],
        [[0, 1, 1, 1, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]],
    )
    without_ignore = RegionTargets(((1, 2),), ignore_label=None)(seg=seg)["seg"]
    assert without_ignore.shape == (1, 1, 5, 1)
