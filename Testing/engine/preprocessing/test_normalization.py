"""Normalization schemes: formulas, the mask rule, errors and the channel-name mapping."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.errors import AutoSegError
from autoseg.plans import IntensityStats
from autoseg.preprocessing.normalization import (
    NORMALIZERS,
    normalize,
)

STATS = IntensityStats(
    mean=50.0,
    median=40.0,
    std=20.0,
    min=-100.0,
    max=300.0,
    percentile_00_5=0.0,
    percentile_99_5=100.0,
)


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(10.0, 3.0, size=(1, 6, 7, 8)).astype(np.float32)


def test_zscore_without_mask_uses_whole_image() -> None:
    data = _image()
    out = normalize(data, None, ["ZScore"], [False], [])
    assert out.dtype == np.float32
    assert abs(out.mean()) < 1e-5
    assert abs(out.std() - 1) < 1e-4


def test_zscore_with_mask_uses_inside_only_and_keeps_outside_zero() -> None:
    data = _image()
    seg = np.zeros((1, 6, 7, 8), np.int16)
    seg[:, :2] = -1
    data[:, :2] = 0.0  # outside the non-zero mask the image is zero
    out = normalize(data, seg, ["ZScore"], [True], [])
    inside = out[0][seg[0] >= 0]
    assert abs(inside.mean()) < 1e-5
    assert abs(inside.std() - 1) < 1e-4
    assert np.all(out[0][seg[0] < 0] == 0)
    expected = (data[0][seg[0] >= 0] - data[0][seg[0] >= 0].mean()) / data[0][seg[0] >= 0].std()
    np.testing.assert_allclose(inside, expected, rtol=1e-4, atol=1e-5)


def test_zscore_constant_image_does_not_divide_by_zero() -> None:
    data = np.full((1, 3, 3, 3), 7.0, np.float32)
    out = normalize(data, None, ["ZScore"], [False], [])
    assert np.all(np.isfinite(out))
    assert np.all(out == 0)


def test_ct_clips_to_dataset_percentiles_then_zscores() -> None:
    data = np.array([-50.0, 0.0, 50.0, 100.0, 500.0], np.float32).reshape(1, 5, 1, 1)
    out = normalize(data, None, ["CT"], [False], [STATS])
    np.testing.assert_allclose(out.ravel(), [-2.5, -2.5, 0.0, 2.5, 2.5])


def test_ct_without_stats_is_a_user_error() -> None:
    with pytest.raises(AutoSegError, match="statistics"):
        normalize(_image(), None, ["CT"], [False], [])


def test_nonorm_rescale_and_rgb() -> None:
    data = np.array([0.0, 51.0, 255.0], np.float32).reshape(1, 3, 1, 1)
    np.testing.assert_array_equal(normalize(data, None, ["NoNorm"], [False], []), data)
    np.testing.assert_allclose(
        normalize(data, None, ["RescaleTo01"], [False], []).ravel(), [0, 0.2, 1]
    )
    np.testing.assert_allclose(normalize(data, None, ["RGBTo01"], [False], []).ravel(), [0, 0.2, 1])


def test_rgb_outside_0_255_raises() -> None:
    data = np.array([0.0, 300.0], np.float32).reshape(1, 2, 1, 1)
    with pytest.raises(AutoSegError, match=r"0\.\.255"):
        normalize(data, None, ["RGBTo01"], [False], [])


def test_unknown_scheme_and_channel_count_mismatch() -> None:
    with pytest.raises(AutoSegError, match="unknown normalization"):
        normalize(_image(), None, ["Fancy"], [False], [])
    with pytest.raises(AutoSegError, match="channel"):
        normalize(_image(), None, ["ZScore", "ZScore"], [False, False], [])


def test_multichannel_uses_scheme_per_channel() -> None:
    data = np.concatenate([_image(1), _image(2) * 0 + 100.0])
    out = normalize(data, None, ["ZScore", "CT"], [False, False], [STATS, STATS])
    assert abs(out[0].mean()) < 1e-5
    assert np.allclose(out[1], 2.5)


def test_registry_holds_the_planner_scheme_names() -> None:
    assert set(NORMALIZERS) == {"CT", "ZScore", "NoNorm", "RescaleTo01", "RGBTo01"}
