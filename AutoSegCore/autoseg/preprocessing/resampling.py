"""Resampling of images, label maps and class probabilities to a target shape.

All functions take channel-first arrays ``(c, ...)`` and an exact output shape (computed once by
``geometry.compute_new_shape`` so image and labels always agree). The output grid is aligned by voxel
*edges* (align-corners=False): output voxel ``j`` samples input coordinate
``(j + 0.5) * n_in / n_out - 0.5``, edges are extended by repetition and no anti-aliasing is done.

Images use a cubic spline (``scipy.ndimage.zoom`` with ``grid_mode=True, mode="nearest"``) whose
result is clipped to the input's value range, so spline overshoot never invents intensities.

Strongly anisotropic volumes (coarsest spacing > 3x the finest, judged on the current spacing, then
on the target spacing) are resampled "separately along z": each slice is resized in-plane, then the
coarse axis is resampled with ``order_z`` (nearest by default), because a cubic spline across 5 mm
slices blurs more than it helps. When two or three axes share the coarsest spacing there is no
single slice axis and everything is resampled jointly.

Label maps are never interpolated as numbers: each label value (ascending, -1 included) is resized
as a binary mask with linear interpolation and written where the mask is >= 0.5, later (larger)
labels winning. Doing this for every label over the whole volume is the slow part of preprocessing,
so each label is only processed inside the output window its bounding box can reach, and label 0
only where -1 could have been written (elsewhere it would only rewrite the initial 0). The linear
interpolation is applied axis by axis, which is exact for a tensor-product linear interpolant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from autoseg.errors import AutoSegError
from autoseg.geometry import is_anisotropic, lowest_resolution_axis
from autoseg.plans import ResamplingSpec

PROBABILITIES_SPEC = ResamplingSpec(order=1)


def separate_z_axis(
    current_spacing: Sequence[float],
    target_spacing: Sequence[float],
    force_separate_z: bool | None = None,
) -> int | None:
    """The axis to resample separately (slice-wise in-plane first), or None for joint resampling."""
    if len(current_spacing) != 3 or force_separate_z is False:
        return None
    if force_separate_z or is_anisotropic(current_spacing):
        return lowest_resolution_axis(current_spacing)
    if is_anisotropic(target_spacing):
        return lowest_resolution_axis(target_spacing)
    return None


def _grid_coordinates(n_in: int, n_out: int) -> np.ndarray:
    """Input coordinate of every output voxel centre (align-corners=False)."""
    return (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Input index sampled by each output voxel under nearest-neighbour resampling."""
    coordinates = _grid_coordinates(n_in, n_out)
    # Let scipy round, so the result matches map_coordinates(order=0, mode="nearest") exactly.
    source = np.arange(n_in, dtype=np.float64)
    picked = ndimage.map_coordinates(source, coordinates[None], order=0, mode="nearest")
    return picked.astype(np.intp)


# --------------------------------------------------------------------------------------- images


def _zoom(image: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    factors = [n / o for n, o in zip(shape, image.shape, strict=True)]
    out = ndimage.zoom(
        image, factors, order=order, mode="nearest", grid_mode=True, output=np.float32
    )
    if out.shape != tuple(shape):  # pragma: no cover - guards against a scipy rounding change
        raise AssertionError(f"zoom gave {out.shape}, expected {tuple(shape)}")
    return out


def _clip_to(out: np.ndarray, low: float, high: float, order: int) -> np.ndarray:
    if order > 1:  # linear and nearest cannot leave the input range
        np.clip(out, low, high, out=out)
    return out


def _resize_slices(
    image: np.ndarray, shape: Sequence[int], order: int, axis: int, per_slice_clip: bool
) -> np.ndarray:
    """Resize every slice along ``axis`` in-plane; ``axis`` keeps its length."""
    moved = np.moveaxis(image, axis, 0)
    plane = [s for a, s in enumerate(shape) if a != axis]
    if list(moved.shape[1:]) == plane:
        return image.astype(np.float32, copy=False)
    out = np.empty((moved.shape[0], *plane), dtype=np.float32)
    low, high = float(image.min()), float(image.max())
    for index, section in enumerate(moved):
        if per_slice_clip:
            low, high = float(section.min()), float(section.max())
        out[index] = _clip_to(_zoom(section, plane, order), low, high, order)
    return np.moveaxis(out, 0, axis)


def _resize_along(image: np.ndarray, size: int, axis: int, order: int) -> np.ndarray:
    if image.shape[axis] == size:
        return image
    if order == 0:
        return np.take(image, nearest_indices(image.shape[axis], size), axis=axis)
    shape = list(image.shape)
    shape[axis] = size
    return _clip_to(_zoom(image, shape, order), float(image.min()), float(image.max()), order)


def _unchanged_axis(old: Sequence[int], new: Sequence[int]) -> int | None:
    same = [a for a, (o, n) in enumerate(zip(old, new, strict=True)) if o == n]
    return same[0] if same and len(old) == 3 else None


def _resize_channel(
    image: np.ndarray, shape: tuple[int, ...], spec: ResamplingSpec, axis: int | None
) -> np.ndarray:
    if axis is not None:  # anisotropic: slice-wise in-plane, then order_z along the slice axis
        inplane = [s if a != axis else image.shape[axis] for a, s in enumerate(shape)]
        resized = _resize_slices(image, inplane, spec.order, axis, per_slice_clip=True)
        return _resize_along(resized, shape[axis], axis, spec.order_z)
    keep = _unchanged_axis(image.shape, shape)
    if keep is not None:  # same result as a joint zoom (spline interpolates its nodes), ~4x cheaper
        return _resize_slices(image, shape, spec.order, keep, per_slice_clip=False)
    out = _zoom(image, shape, spec.order)
    return _clip_to(out, float(image.min()), float(image.max()), spec.order)


def resample_data(
    data: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    target_spacing: Sequence[float],
    spec: ResamplingSpec,
) -> np.ndarray:
    """Resample an image ``(c, ...)`` to ``new_shape`` (spatial); returns float32 (a no-op when equal)."""
    shape = tuple(int(s) for s in new_shape)
    if tuple(data.shape[1:]) == shape:
        return data.astype(np.float32, copy=False)
    axis = separate_z_axis(current_spacing, target_spacing, spec.force_separate_z)
    out = np.empty((data.shape[0], *shape), dtype=np.float32)
    for channel in range(data.shape[0]):
        image = data[channel].astype(np.float32, copy=False)
        out[channel] = _resize_channel(image, shape, spec, axis)
    return out


def resample_probabilities(
    probabilities: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    target_spacing: Sequence[float],
    spec: ResamplingSpec = PROBABILITIES_SPEC,
) -> np.ndarray:
    """Resample per-class probabilities or logits ``(k, ...)`` (linear, nearest along z if separate)."""
    return resample_data(probabilities, new_shape, current_spacing, target_spacing, spec)


# --------------------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class _AxisMap:
    """Per output voxel along one axis: the two input indices and the weight of the second."""

    low: np.ndarray
    high: np.ndarray
    weight: np.ndarray | None  # None: plain index selection (nearest or unchanged axis)

    @classmethod
    def build(cls, n_in: int, n_out: int, order: int) -> _AxisMap:
        if n_in == n_out:
            index = np.arange(n_in, dtype=np.intp)
            return cls(index, index, None)
        if order == 0:
            index = nearest_indices(n_in, n_out)
            return cls(index, index, None)
        if order != 1:
            raise AutoSegError(
                f"plans: segmentation resampling order {order} is not supported (use 0 or 1). "
                "Fix: set resampling 'seg' order to 1 (default) or 0 in the plans."
            )
        coordinates = _grid_coordinates(n_in, n_out)
        floor = np.floor(coordinates)
        low = np.clip(floor, 0, n_in - 1).astype(np.intp)
        high = np.clip(floor + 1, 0, n_in - 1).astype(np.intp)
        return cls(low, high, (coordinates - floor).astype(np.float32))

    def output_window(self, start: int, stop: int) -> tuple[int, int]:
        """Output voxels whose interpolation touches input indices ``[start, stop)``."""
        hits = ((self.low >= start) & (self.low < stop)) | (
            (self.high >= start) & (self.high < stop)
        )
        found = np.flatnonzero(hits)
        return (int(found[0]), int(found[-1]) + 1) if found.size else (0, 0)

    def input_window(self, start: int, stop: int) -> tuple[int, int]:
        """Input indices needed to compute output voxels ``[start, stop)``."""
        return int(self.low[start:stop].min()), int(self.high[start:stop].max()) + 1

    def apply(self, block: np.ndarray, axis: int, window: tuple[int, int], offset: int):
        low = self.low[window[0] : window[1]] - offset
        first = np.take(block, low, axis=axis)
        if self.weight is None:
            return first
        high = self.high[window[0] : window[1]] - offset
        shape = [1] * block.ndim
        shape[axis] = -1
        weight = self.weight[window[0] : window[1]].reshape(shape)
        return first * (1 - weight) + np.take(block, high, axis=axis) * weight


def _paint_label(
    out: np.ndarray, labels: np.ndarray, value: int, maps: list[_AxisMap], window: list
) -> None:
    """Resize the mask ``labels == value`` inside the output ``window`` and paint it into ``out``."""
    inputs = [m.input_window(*w) for m, w in zip(maps, window, strict=True)]
    block = labels[tuple(slice(*w) for w in inputs)] == value
    mask = block.astype(np.float32)
    # Shrink first along the axis that shrinks most: later passes then touch fewer voxels.
    ratios = [(w[1] - w[0]) / max(i[1] - i[0], 1) for w, i in zip(window, inputs, strict=True)]
    for axis in np.argsort(ratios, kind="stable"):
        mask = maps[axis].apply(mask, int(axis), window[axis], inputs[axis][0])
    target = out[tuple(slice(*w) for w in window)]
    target[mask >= 0.5] = value


def _resize_label_map(
    labels: np.ndarray, shape: Sequence[int], orders: Sequence[int]
) -> np.ndarray:
    """Per-label mask resize of one label map with a (separable) order per axis."""
    maps = [_AxisMap.build(i, o, r) for i, o, r in zip(labels.shape, shape, orders, strict=True)]
    out = np.zeros(tuple(shape), dtype=labels.dtype)
    low, high = int(labels.min()), int(labels.max())
    # Shift labels to 1..n (find_objects ignores <= 0) in the smallest dtype: this is a full pass.
    dtype = next(t for t in (np.int8, np.int16, np.int32, np.int64) if np.iinfo(t).max > high - low)
    boxes = ndimage.find_objects(np.subtract(labels, low - 1, dtype=dtype))
    windows: dict[int, list[tuple[int, int]]] = {}
    for index, box in enumerate(boxes):
        if box is None:
            continue
        value = index + low
        windows[value] = [m.output_window(s.start, s.stop) for m, s in zip(maps, box, strict=True)]
    for value, own_window in windows.items():
        window = own_window
        if value == 0:  # 0 only matters where -1 may have been painted; out starts at 0
            if -1 not in windows:
                continue
            window = windows[-1]
        if all(w[1] > w[0] for w in window):
            _paint_label(out, labels, value, maps, window)
    return out


def _resize_labels(labels: np.ndarray, shape: tuple[int, ...], spec: ResamplingSpec, axis):
    if axis is None:
        return _resize_label_map(labels, shape, [spec.order] * labels.ndim)
    inplane = [s if a != axis else labels.shape[axis] for a, s in enumerate(shape)]
    resized = _resize_label_map(labels, inplane, [spec.order] * labels.ndim)
    if resized.shape[axis] == shape[axis]:
        return resized
    if spec.order_z == 0:  # nearest commutes with thresholding: take slices of the label map
        return np.take(resized, nearest_indices(resized.shape[axis], shape[axis]), axis=axis)
    orders = [spec.order_z if a == axis else 0 for a in range(labels.ndim)]
    return _resize_label_map(resized, shape, orders)


def resample_seg(
    seg: np.ndarray,
    new_shape: Sequence[int],
    current_spacing: Sequence[float],
    target_spacing: Sequence[float],
    spec: ResamplingSpec,
) -> np.ndarray:
    """Resample an integer label map ``(1, ...)`` (may contain -1); keeps dtype, adds no new labels."""
    shape = tuple(int(s) for s in new_shape)
    if tuple(seg.shape[1:]) == shape:
        return seg
    axis = separate_z_axis(current_spacing, target_spacing, spec.force_separate_z)
    out = np.empty((seg.shape[0], *shape), dtype=seg.dtype)
    for channel in range(seg.shape[0]):
        out[channel] = _resize_labels(seg[channel], shape, spec, axis)
    return out
