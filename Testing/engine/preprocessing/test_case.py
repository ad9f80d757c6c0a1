"""One-case pipeline: transpose, crop, normalization before resampling, shapes and locations."""

from __future__ import annotations

import numpy as np
import pytest

from autoseg.labels import LabelSpec
from autoseg.plans import PreprocessingSpec
from autoseg.preprocessing import CaseRecipe, preprocess_case
from autoseg.preprocessing.case import class_location_key, sample_class_locations

LABELS = LabelSpec.from_json({"background": 0, "a": 1, "b": 2})


def _volume() -> tuple[np.ndarray, np.ndarray]:
    """(1, 12, 16, 20) image with a zero border; labels inside the non-zero box."""
    rng = np.random.default_rng(0)
    image = np.zeros((1, 12, 16, 20), np.float32)
    image[0, 2:10, 3:13, 4:18] = rng.normal(100, 10, (8, 10, 14))
    image[0, 2, 3, 4] = 0.0  # a zero corner voxel inside the box is still "outside" (not enclosed)
    seg = np.zeros((1, 12, 16, 20), np.uint8)
    seg[0, 4:7, 5:9, 6:12] = 1
    seg[0, 7:9, 9:11, 12:15] = 2
    return image, seg


def _recipe(spacing=(1.0, 1.0, 1.0), is_2d=False, transpose=(0, 1, 2), labels=LABELS):
    spec = PreprocessingSpec(
        spacing=spacing, normalization_schemes=("ZScore",), use_mask_for_norm=(True,)
    )
    return CaseRecipe(spec, transpose, (), labels, is_2d)


def test_crop_box_shapes_and_outside_label() -> None:
    image, seg = _volume()
    result = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe())
    props = result.properties
    assert props["shape_before_cropping"] == [12, 16, 20]
    assert props["bbox_used_for_cropping"] == [[2, 10], [3, 13], [4, 18]]
    assert props["shape_after_cropping_and_before_resampling"] == [8, 10, 14]
    assert result.data.shape == (1, 8, 10, 14)
    assert result.seg.shape == (1, 8, 10, 14)
    assert result.seg.dtype == np.int8
    assert result.seg[0, 0, 0, 0] == -1  # the zero corner is outside the non-zero mask
    assert set(np.unique(result.seg)) == {-1, 0, 1, 2}
    assert result.data[0, 0, 0, 0] == 0  # masked z-score leaves outside at 0
    inside = result.data[0][result.seg[0] >= 0]
    assert abs(inside.mean()) < 1e-4


def test_resampling_and_transpose_are_recorded() -> None:
    image, seg = _volume()
    recipe = _recipe(spacing=(1.0, 2.0, 0.5), transpose=(2, 0, 1))
    result = preprocess_case(image, seg, (2.0, 1.0, 1.0), recipe, {"spacing": [2.0, 1.0, 1.0]})
    props = result.properties
    assert props["spacing"] == [2.0, 1.0, 1.0]
    assert props["transpose_forward"] == [2, 0, 1]
    assert props["shape_before_cropping"] == [20, 12, 16]
    assert props["shape_after_cropping_and_before_resampling"] == [14, 8, 10]
    assert props["target_spacing"] == [1.0, 2.0, 0.5]
    # transposed spacing (1, 2, 1) -> target (1, 2, 0.5): shape (14, 8, 20)
    assert result.data.shape == (1, 14, 8, 20)
    assert result.seg.shape == (1, 14, 8, 20)
    assert props["geometry"] == {"spacing": [2.0, 1.0, 1.0]}


def test_2d_configuration_never_resamples_axis_0() -> None:
    image, seg = _volume()
    recipe = _recipe(spacing=(0.5, 0.5), is_2d=True)
    result = preprocess_case(image, seg, (3.0, 1.0, 1.0), recipe)
    assert result.properties["target_spacing"] == [3.0, 0.5, 0.5]
    assert result.data.shape == (1, 8, 20, 28)


def test_inference_without_seg() -> None:
    image, _ = _volume()
    result = preprocess_case(image, None, (1.0, 1.0, 1.0), _recipe(spacing=(2.0, 2.0, 2.0)))
    assert result.seg is None
    assert result.class_locations == {}
    assert result.data.shape == (1, 4, 5, 7)


def test_class_locations_are_inside_their_class_and_reproducible() -> None:
    image, seg = _volume()
    first = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe())
    second = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe())
    assert set(first.class_locations) == {"1", "2"}
    for key, coordinates in first.class_locations.items():
        assert coordinates.shape[1] == 3
        assert coordinates.dtype == np.int32
        values = first.seg[0][tuple(coordinates.T)]
        assert np.all(values == int(key))
        np.testing.assert_array_equal(coordinates, second.class_locations[key])
    assert len(first.class_locations["1"]) == int(np.sum(first.seg == 1))  # < 10000: all voxels


def test_location_count_rule_and_region_and_ignore_keys() -> None:
    seg = np.zeros((1, 120, 100, 100), np.int16)
    seg[0, :100] = 1  # 1e6 voxels -> max(10000, 1%) = 10000
    seg[0, 100:, :50] = 2
    seg[0, 110:, 50:] = 3  # the ignore label
    labels = LabelSpec.from_json({"background": 0, "a": 1, "b": 2, "ignore": 3})
    locations = sample_class_locations(seg, labels)
    assert len(locations["1"]) == 10_000
    assert len(np.unique(locations["1"], axis=0)) == 10_000  # without replacement
    annotated = locations["(-1, 0, 1, 2)"]
    assert not np.any(seg[0][tuple(annotated.T)] == 3)
    regions = LabelSpec.from_json({"background": 0, "whole": [1, 2], "core": 2}, [1, 2])
    keys = set(sample_class_locations(seg, regions))
    assert keys == {"(1, 2)", "2"}


@pytest.mark.parametrize(("value", "key"), [(1, "1"), ((1, 2), "(1, 2)"), ((3,), "3")])
def test_class_location_key(value, key) -> None:
    assert class_location_key(value) == key


def test_large_label_values_use_int16() -> None:
    image, seg = _volume()
    seg = seg.astype(np.uint16) * 100
    labels = LabelSpec.from_json({"background": 0, "a": 100, "b": 200})
    result = preprocess_case(image, seg, (1.0, 1.0, 1.0), _recipe(labels=labels))
    assert result.seg.dtype == np.int16
    assert set(result.class_locations) == {"100", "200"}
