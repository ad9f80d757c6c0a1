"""Preprocess one case: transpose, crop, normalize, resample, and sample class locations.

The same function serves training (with a segmentation) and inference (``seg=None``). The
properties record every shape and box needed to undo the steps for an exported prediction: the
shape before cropping, the crop box and the shape before resampling, all in *transposed* axis order,
plus the original spacing in the file's array order.

Class locations are what the training sampler uses to centre "foreground" patches. They are stored
as ``(N, 3)`` int32 voxel coordinates ``[x, y, z]`` of the preprocessed array; nnU-Net keeps a fourth,
always-zero channel column, which we drop because segmentations have a single channel.
Keys are strings (JSON- and npz-friendly): ``"1"`` for a label, ``"(1, 2)"`` for a region, and with
an ignore label ``"(-1, 0, 1, 2)"`` for "any annotated voxel" (see :func:`class_location_key`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoseg.geometry import compute_new_shape, crop_to_nonzero
from autoseg.labels import LabelSpec
from autoseg.plans import IntensityStats, Plans, PreprocessingSpec
from autoseg.preprocessing.normalization import normalize
from autoseg.preprocessing.resampling import resample_data, resample_seg

LOCATION_SEED = 1234
MAX_LOCATIONS_PER_CLASS = 10_000
MIN_LOCATION_FRACTION = 0.01


@dataclass(frozen=True)
class CaseRecipe:
    """Everything about a configuration that preprocessing one case needs (picklable, small)."""

    spec: PreprocessingSpec
    transpose_forward: tuple[int, ...]
    intensity_stats: tuple[IntensityStats, ...]
    labels: LabelSpec | None = None
    is_2d: bool = False

    @classmethod
    def from_plans(cls, plans: Plans, configuration: str, labels: LabelSpec | None) -> CaseRecipe:
        config = plans.configuration(configuration)
        return cls(
            spec=config.preprocessing,
            transpose_forward=tuple(int(a) for a in plans.transpose_forward),
            intensity_stats=tuple(plans.intensity_stats()),
            labels=labels,
            is_2d=config.is_2d,
        )


@dataclass
class PreprocessedCase:
    """The result: data ``(c, x, y, z)`` float32, seg ``(1, x, y, z)`` int8/int16 (or None)."""

    data: np.ndarray
    seg: np.ndarray | None
    properties: dict[str, Any]
    class_locations: dict[str, np.ndarray] = field(default_factory=dict)


def class_location_key(value: int | Sequence[int]) -> str:
    """String key of a label (``"1"``) or a region / label group (``"(1, 2)"``)."""
    if isinstance(value, int | np.integer):
        return str(int(value))
    members = [int(v) for v in value]
    return str(members[0]) if len(members) == 1 else "(" + ", ".join(map(str, members)) + ")"


def location_classes(labels: LabelSpec) -> list[tuple[int, ...]]:
    """The label groups to sample locations for, in order (regions, labels, then 'annotated')."""
    classes = (
        [tuple(r) for r in labels.foreground_regions]
        if labels.has_regions
        else [(v,) for v in labels.foreground_labels]
    )
    if labels.ignore_label is not None:
        classes.append((-1, *labels.all_labels))
    return classes


def sample_class_locations(seg: np.ndarray, labels: LabelSpec) -> dict[str, np.ndarray]:
    """Random voxel coordinates per class of a ``(1, x, y, z)`` map (seeded, so reproducible)."""
    rng = np.random.default_rng(LOCATION_SEED)
    spatial = seg[0]
    locations: dict[str, np.ndarray] = {}
    for members in location_classes(labels):
        mask = spatial == members[0] if len(members) == 1 else np.isin(spatial, members)
        flat = np.flatnonzero(mask)
        count = max(
            min(MAX_LOCATIONS_PER_CLASS, flat.size), math.ceil(MIN_LOCATION_FRACTION * flat.size)
        )
        picked = rng.choice(flat, size=count, replace=False) if count < flat.size else flat
        coordinates = np.stack(np.unravel_index(picked, spatial.shape), axis=1)
        locations[class_location_key(members)] = coordinates.astype(np.int32).reshape(-1, 3)
    return locations


def _target_spacing(transposed_spacing: Sequence[float], recipe: CaseRecipe) -> list[float]:
    if recipe.is_2d:  # 2D configurations never resample across slices
        return [float(transposed_spacing[0]), *map(float, recipe.spec.spacing)]
    return [float(s) for s in recipe.spec.spacing]


def _compact_labels(seg: np.ndarray) -> np.ndarray:
    return seg.astype(np.int16 if seg.size and int(seg.max()) > 127 else np.int8)


def preprocess_case(
    images: np.ndarray,
    seg: np.ndarray | None,
    image_spacing: Sequence[float],
    recipe: CaseRecipe,
    geometry: dict[str, Any] | None = None,
) -> PreprocessedCase:
    """Run the preprocessing pipeline on one case.

    Args:
        images: ``(c, x, y, z)`` image in the file's array order.
        seg: ``(1, x, y, z)`` label map or None (inference).
        image_spacing: spacing in the file's array order.
        recipe: the configuration's preprocessing settings.
        geometry: ``Geometry.to_json()`` of the source image, stored in the properties for export.
    """
    axes = [int(a) for a in recipe.transpose_forward]
    data = np.asarray(images, dtype=np.float32).transpose([0, *(a + 1 for a in axes)])
    if seg is not None:
        seg = np.asarray(seg).transpose([0, *(a + 1 for a in axes)])
    spacing = [float(image_spacing[a]) for a in axes]
    properties: dict[str, Any] = {
        "spacing": [float(s) for s in image_spacing],
        "geometry": geometry,
        "transpose_forward": axes,
        "shape_before_cropping": [int(s) for s in data.shape[1:]],
    }
    data, cropped_seg, box = crop_to_nonzero(data, seg)
    properties["bbox_used_for_cropping"] = [[int(a), int(b)] for a, b in box]
    properties["shape_after_cropping_and_before_resampling"] = [int(s) for s in data.shape[1:]]
    target = _target_spacing(spacing, recipe)
    properties["target_spacing"] = target
    new_shape = compute_new_shape(data.shape[1:], spacing, target)
    spec = recipe.spec
    data = normalize(
        data,
        cropped_seg,
        spec.normalization_schemes,
        spec.use_mask_for_norm,
        recipe.intensity_stats,
    )
    data = resample_data(data, new_shape, spacing, target, spec.resampling_data)
    if seg is None:
        return PreprocessedCase(np.ascontiguousarray(data), None, properties)
    resampled = resample_seg(cropped_seg, new_shape, spacing, target, spec.resampling_seg)
    locations = sample_class_locations(resampled, recipe.labels) if recipe.labels else {}
    return PreprocessedCase(
        np.ascontiguousarray(data), _compact_labels(resampled), properties, locations
    )
