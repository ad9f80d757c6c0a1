"""Resampling: exact shapes, label safety, the separate-z rule and agreement with scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from autoseg.errors import AutoSegError
from autoseg.plans import ResamplingSpec
from autoseg.preprocessing import resampling
from autoseg.preprocessing.resampling import (
    nearest_indices,
    resample_data,
    resample_probabilities,
    resample_seg,
    separate_z_axis,
)

DATA = ResamplingSpec(order=3)
SEG = ResamplingSpec(order=1)
ISO = (1.0, 1.0, 1.0)


def _blobs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A smooth label map with -1, 0, 1, 2, 3 (blocky, like real segmentations)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(-1, 4, (4, 4, 4))
    factors = [s / 4 for s in shape]
    return ndimage.zoom(coarse, factors, order=0, grid_mode=True, mode="nearest").astype(np.int16)


def _reference_seg(seg: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The definition, over the whole volume: each label's indicator resized linearly, the highest
    wins; an exact tie goes to the nearest neighbour's label if it is tied, else the smallest."""
    factors = [n / o for n, o in zip(shape, seg.shape, strict=True)]
    values = np.unique(seg)
    scores = np.stack(
        [
            ndimage.zoom(
                (seg == v).astype(np.float64), factors, order=1, mode="nearest", grid_mode=True
            )
            for v in values
        ]
    )
    nearest = ndimage.zoom(seg, factors, order=0, mode="nearest", grid_mode=True)
    out = values[np.argmax(scores, axis=0)]
    nearest_score = np.take_along_axis(scores, np.searchsorted(values, nearest)[None], 0)[0]
    tied = nearest_score == scores.max(axis=0)
    out[tied] = nearest[tied]
    return out


def test_separate_z_rule() -> None:
    assert separate_z_axis((5.0, 1.0, 1.0), (1.0, 1.0, 1.0)) == 0
    assert separate_z_axis((1.0, 1.0, 1.0), (1.0, 4.0, 1.0)) == 1  # from the target spacing
    assert separate_z_axis((1.0, 1.0, 1.0), (1.0, 2.0, 1.0)) is None
    assert separate_z_axis((5.0, 5.0, 1.0), (1.0, 1.0, 1.0)) is None  # tie -> joint
    assert separate_z_axis((5.0, 1.0, 1.0), ISO, force_separate_z=False) is None
    assert separate_z_axis((2.0, 1.0, 1.0), ISO, force_separate_z=True) == 0


@pytest.mark.parametrize("new_shape", [(13, 9, 20), (5, 30, 7), (10, 12, 14)])
def test_data_exact_shape_and_matches_clipped_cubic_zoom(new_shape) -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2, 10, 12, 14)).astype(np.float32)
    out = resample_data(data, new_shape, ISO, ISO, DATA)
    assert out.shape == (2, *new_shape)
    assert out.dtype == np.float32
    factors = [n / o for n, o in zip(new_shape, data.shape[1:], strict=True)]
    expected = ndimage.zoom(data[1], factors, order=3, mode="nearest", grid_mode=True)
    expected = np.clip(expected, data[1].min(), data[1].max())
    np.testing.assert_allclose(out[1], expected, atol=1e-5)


def test_identity_when_shape_unchanged() -> None:
    data = np.random.default_rng(2).normal(size=(1, 6, 7, 8)).astype(np.float32)
    seg = _blobs((6, 7, 8))[None]
    assert resample_data(data, (6, 7, 8), ISO, (2.0, 2.0, 2.0), DATA) is data
    assert resample_seg(seg, (6, 7, 8), ISO, (2.0, 2.0, 2.0), SEG) is seg


def test_constant_image_stays_constant() -> None:
    data = np.full((1, 9, 10, 11), 3.25, np.float32)
    for spacing in (ISO, (4.0, 1.0, 1.0)):
        out = resample_data(data, (5, 17, 23), spacing, ISO, DATA)
        assert np.all(out == np.float32(3.25))


@pytest.mark.parametrize("seed", range(4))
def test_seg_keeps_labels_exact_shape_and_matches_definition(seed) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in rng.integers(8, 24, 3))
    new_shape = tuple(
        max(2, round(s * f)) for s, f in zip(shape, rng.uniform(0.4, 2.2, 3), strict=True)
    )
    seg = _blobs(shape, seed)
    out = resample_seg(seg[None], new_shape, ISO, ISO, SEG)
    assert out.shape == (1, *new_shape)
    assert out.dtype == seg.dtype
    assert set(np.unique(out)) <= set(np.unique(seg))
    np.testing.assert_array_equal(out[0], _reference_seg(seg, new_shape))


def test_seg_tie_goes_to_the_nearest_neighbour_not_the_larger_label() -> None:
    # Halving puts every output voxel exactly between two inputs: scores 0.5 / 0.5.
    seg = np.array([1, 2, 2, 1], dtype=np.int16).reshape(1, 1, 1, 4)
    out = resample_seg(seg, (1, 1, 2), ISO, ISO, SEG)
    np.testing.assert_array_equal(out.ravel(), [2, 1])  # the nearest inputs are 1 and 3


def test_seg_tie_without_the_nearest_label_goes_to_the_smallest() -> None:
    # 2x2x2 -> 1: labels 1 and 2 score 0.375 each, 3 (the nearest neighbour) 0.25.
    seg = np.array([3, 1, 1, 1, 2, 2, 2, 3], dtype=np.int16).reshape(1, 2, 2, 2)
    assert resample_seg(seg, (1, 1, 1), ISO, ISO, SEG).item() == 1


def test_seg_never_leaves_a_voxel_unlabelled_where_four_labels_meet() -> None:
    # 2x2 -> 1 in-plane: four labels at 0.25 each; '>= 0.5' would have left 0, not an input label.
    seg = np.array([1, 2, 3, 4], dtype=np.int16).reshape(1, 1, 2, 2)
    assert resample_seg(seg, (1, 1, 1), ISO, ISO, SEG).item() in {1, 2, 3, 4}


def test_separate_z_linear_across_slices_writes_labels_above_one_half_only() -> None:
    seg = np.stack([np.full((2, 2), 1), np.full((2, 2), 2)]).astype(np.int16)[None]
    spec = ResamplingSpec(order=1, order_z=1)
    halved = resample_seg(seg, (1, 2, 2), (5.0, 1.0, 1.0), (10.0, 1.0, 1.0), spec)
    assert np.all(halved == 0)  # exactly between the two slices: nnU-Net writes neither label
    doubled = resample_seg(seg, (4, 2, 2), (5.0, 1.0, 1.0), (2.5, 1.0, 1.0), spec)
    np.testing.assert_array_equal(doubled[0, :, 0, 0], [1, 1, 2, 2])


def test_separate_z_is_inplane_then_nearest_along_z() -> None:
    rng = np.random.default_rng(3)
    data = rng.normal(size=(1, 6, 20, 18)).astype(np.float32)
    seg = _blobs((6, 20, 18))[None]
    spacing, target = (5.0, 1.0, 1.0), (2.0, 1.5, 1.5)
    new_shape = (15, 13, 12)
    out = resample_data(data, new_shape, spacing, target, DATA)
    slices = []
    for section in data[0]:
        zoomed = ndimage.zoom(section, [13 / 20, 12 / 18], order=3, mode="nearest", grid_mode=True)
        slices.append(np.clip(zoomed, section.min(), section.max()))
    expected = np.stack(slices)[nearest_indices(6, 15)]
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    seg_out = resample_seg(seg, new_shape, spacing, target, SEG)
    inplane = np.stack([_reference_seg(s[None], (1, 13, 12))[0] for s in seg[0]])
    np.testing.assert_array_equal(seg_out[0], inplane[nearest_indices(6, 15)])


def test_nearest_indices_align_corners_false() -> None:
    np.testing.assert_array_equal(nearest_indices(2, 4), [0, 0, 1, 1])
    np.testing.assert_array_equal(nearest_indices(4, 2), [1, 3])  # centres 0.5 and 2.5 round up
    np.testing.assert_array_equal(nearest_indices(3, 3), [0, 1, 2])


def test_probabilities_linear_stay_in_range() -> None:
    probabilities = np.random.default_rng(4).random((3, 5, 6, 7)).astype(np.float32)
    out = resample_probabilities(probabilities, (9, 4, 11), ISO, ISO)
    assert out.shape == (3, 9, 4, 11)
    assert out.min() >= probabilities.min() - 1e-6
    assert out.max() <= probabilities.max() + 1e-6


def test_unsupported_seg_order_is_reported() -> None:
    with pytest.raises(AutoSegError, match="order 3"):
        resample_seg(_blobs((8, 8, 8))[None], (4, 4, 4), ISO, ISO, ResamplingSpec(order=3))


def test_seg_in_chunks_equals_the_definition(monkeypatch) -> None:
    monkeypatch.setattr(resampling, "_CHUNK_VOXELS", 40)  # a few output rows per chunk
    seg = _blobs((9, 11, 13), seed=5)
    out = resample_seg(seg[None], (14, 6, 20), ISO, ISO, SEG)
    np.testing.assert_array_equal(out[0], _reference_seg(seg, (14, 6, 20)))
