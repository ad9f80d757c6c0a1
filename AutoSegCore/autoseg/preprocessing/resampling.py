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

Label maps are never interpolated as numbers: each label's indicator (1 where the label is) is
interpolated linearly and the label scoring highest is written, as nnU-Net v2 does it today
(``resize_segmentation`` of batchgenerators 0.25.5, which nnunetv2 2.8.1 installs). Exact ties are
common (halving the size puts every boundary voxel exactly between two labels): they go to the
nearest neighbour's label when it is one of the tied labels, otherwise to the smallest tied label.
The former rule (a label wherever its indicator is >= 0.5, larger labels winning) let the label
values decide ties and left voxels where several labels met at 0 even when 0 was none of them. The
scores are computed with scipy's arithmetic for linear zoom, so ties are ties bit for bit, and only
voxels whose interpolation corners read different labels are scored at all, so the cost does not
grow with the number of labels. Across slices of an anisotropic volume, linear (``order_z`` 1)
writes a label only where its indicator is above 0.5 (an exact tie leaves 0), also as nnU-Net does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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

Tap = tuple[np.ndarray, np.ndarray | None]  # input index per output voxel, its weight (None: 1)
_CHUNK_VOXELS = 1 << 21  # output voxels voted on at once (bounds the corner arrays' memory)


@dataclass(frozen=True)
class _AxisMap:
    """Per output voxel along one axis: the input voxels it reads with their linear weights, and
    its nearest input voxel (which settles exact ties).

    The weights are computed as scipy computes them for ``zoom(order=1, grid_mode=True,
    mode="nearest")`` (``1 - x`` for the lower neighbour, ``1 - (1 - x)`` for the upper one, edge
    voxels repeated beyond the edge), because exact ties between labels decide voxels, and a
    one-ulp difference would turn a tie into a win.
    """

    taps: tuple[Tap, ...]
    nearest: np.ndarray

    @classmethod
    def build(cls, n_in: int, n_out: int, order: int) -> _AxisMap:
        if n_in == n_out:
            index = np.arange(n_in, dtype=np.intp)
            return cls(((index, None),), index)
        nearest = nearest_indices(n_in, n_out)
        if order == 0:
            return cls(((nearest, None),), nearest)
        if order != 1:
            raise AutoSegError(
                f"plans: segmentation resampling order {order} is not supported (use 0 or 1). "
                "Fix: set resampling 'seg' order to 1 (default) or 0 in the plans."
            )
        coordinates = _grid_coordinates(n_in, n_out)
        floor = np.floor(coordinates)
        lower = 1.0 - (coordinates - floor)
        low = np.clip(floor, 0, n_in - 1).astype(np.intp)  # beyond the edge: the edge voxel
        high = np.clip(floor + 1, 0, n_in - 1).astype(np.intp)
        return cls(((low, lower), (high, 1.0 - lower)), nearest)

    def rows(self, start: int, stop: int) -> _AxisMap:
        """The same map for output voxels ``[start, stop)`` only."""
        taps = tuple((i[start:stop], None if w is None else w[start:stop]) for i, w in self.taps)
        return _AxisMap(taps, self.nearest[start:stop])


def _corners(labels: np.ndarray, maps: list[_AxisMap]) -> list[np.ndarray]:
    """The label each output voxel reads at each interpolation corner, in scipy's corner order
    (last axis fastest); one axis at a time, so every gather stays a plain ``take``."""
    gathered = [labels]
    for axis, m in enumerate(maps):
        gathered = [np.take(g, index, axis=axis) for g in gathered for index, _ in m.taps]
    return gathered


def _corner_weights(maps: list[_AxisMap], points: tuple[np.ndarray, ...]) -> list[Any]:
    """Each corner's weight at the output voxels ``points``: the product of its axis weights in
    axis order, as scipy multiplies them (None where every axis reads one voxel)."""
    weights: list[Any] = [None]
    for m, where in zip(maps, points, strict=True):
        along = [None if w is None else w[where] for _, w in m.taps]
        weights = [a if w is None else (w if a is None else w * a) for w in weights for a in along]
    return weights


def _score(corners: list[np.ndarray], weights: list[Any], label: np.ndarray) -> np.ndarray:
    """Interpolated indicator of ``label`` (per voxel), summed corner by corner like scipy."""
    total = np.zeros(label.shape, dtype=np.float64)
    for corner, weight in zip(corners, weights, strict=True):
        total += (corner == label) if weight is None else (corner == label) * weight
    return total


def _vote(corners: list[np.ndarray], weights: list[Any], nearest: np.ndarray):
    """(winning label, its score) per voxel: the highest interpolated indicator; an exact tie goes
    to the nearest neighbour's label when it is tied, otherwise to the smallest tied label.
    Each label is scored once per voxel (at the first corner that reads it)."""
    best = np.full(nearest.shape, -1.0)
    winner = corners[0].copy()
    for k, candidate in enumerate(corners):
        fresh = np.ones(candidate.shape, dtype=bool)
        for earlier in corners[:k]:
            fresh &= earlier != candidate
        at = np.flatnonzero(fresh)
        score = _score([c[at] for c in corners], _take(weights, at), candidate[at])
        better = (score > best[at]) | ((score == best[at]) & (candidate[at] < winner[at]))
        winner[at[better]] = candidate[at[better]]
        best[at] = np.maximum(best[at], score)
    at = np.flatnonzero(nearest != winner)
    tied = _score([c[at] for c in corners], _take(weights, at), nearest[at]) == best[at]
    winner[at[tied]] = nearest[at[tied]]
    return winner, best


def _take(weights: list[Any], at: np.ndarray) -> list[Any]:
    return [None if w is None else w[at] for w in weights]


def _resize_chunk(labels: np.ndarray, maps: list[_AxisMap], threshold: bool) -> np.ndarray:
    """Label vote for the output voxels of ``maps``. Only voxels whose corners disagree are
    scored; everywhere else the one label they read scores 1."""
    corners = _corners(labels, maps)
    out = corners[0].copy()
    mixed = np.zeros(out.shape, dtype=bool)
    for corner in corners[1:]:
        mixed |= corner != out
    points = np.nonzero(mixed)
    if not points[0].size:
        return out
    nearest = labels[tuple(m.nearest[p] for m, p in zip(maps, points, strict=True))]
    winner, score = _vote([c[points] for c in corners], _corner_weights(maps, points), nearest)
    if threshold:  # nnU-Net's linear resampling across slices: above 0.5 or nothing (0)
        winner[score <= 0.5] = 0
    out[points] = winner
    return out


def _resize_label_map(
    labels: np.ndarray, shape: Sequence[int], orders: Sequence[int], threshold: bool = False
) -> np.ndarray:
    """Resize one label map: per label, its indicator interpolated (orders per axis), and the
    label that scores highest is written (see :func:`_vote`); in chunks along the first axis."""
    maps = [_AxisMap.build(i, o, r) for i, o, r in zip(labels.shape, shape, orders, strict=True)]
    out = np.empty(tuple(shape), dtype=labels.dtype)
    step = max(1, _CHUNK_VOXELS // max(1, int(np.prod(shape[1:]))))
    for start in range(0, shape[0], step):
        stop = min(start + step, shape[0])
        out[start:stop] = _resize_chunk(labels, [maps[0].rows(start, stop), *maps[1:]], threshold)
    return out


def _resize_labels(labels: np.ndarray, shape: tuple[int, ...], spec: ResamplingSpec, axis):
    if axis is None:
        return _resize_label_map(labels, shape, [spec.order] * labels.ndim)
    inplane = [s if a != axis else labels.shape[axis] for a, s in enumerate(shape)]
    resized = _resize_label_map(labels, inplane, [spec.order] * labels.ndim)
    if resized.shape[axis] == shape[axis]:
        return resized
    if spec.order_z == 0:  # nearest: take slices of the label map
        return np.take(resized, nearest_indices(resized.shape[axis], shape[axis]), axis=axis)
    orders = [spec.order_z if a == axis else 0 for a in range(labels.ndim)]
    return _resize_label_map(resized, shape, orders, threshold=True)


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
