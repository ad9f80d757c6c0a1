"""Pure shape and spacing arithmetic shared by planning, preprocessing and inference.

Arrays are channel-first ``(c, x, y, z)``; spacings and shapes are given per spatial axis in the same
order. Bounding boxes are half-open ``[start, end)`` per axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

BoundingBox = list[tuple[int, int]]

ANISOTROPY_THRESHOLD = 3.0


def compute_new_shape(
    shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """Shape after resampling from ``old_spacing`` to ``new_spacing`` (rounded per axis)."""
    return tuple(
        round(float(old) / float(new) * int(size))
        for size, old, new in zip(shape, old_spacing, new_spacing, strict=True)
    )


def is_anisotropic(spacing: Sequence[float]) -> bool:
    """True when the coarsest axis is more than ``ANISOTROPY_THRESHOLD`` times the finest."""
    return max(spacing) / min(spacing) > ANISOTROPY_THRESHOLD


def lowest_resolution_axis(spacing: Sequence[float]) -> int | None:
    """The single axis with the largest spacing, or None when two or more axes share the maximum."""
    largest = max(spacing)
    axes = [i for i, s in enumerate(spacing) if s == largest]
    return axes[0] if len(axes) == 1 else None


def inverse_permutation(permutation: Sequence[int]) -> tuple[int, ...]:
    """The permutation that undoes ``permutation`` (transpose_backward from transpose_forward)."""
    return tuple(int(i) for i in np.argsort(permutation))


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """Voxels that are non-zero in any channel, with enclosed holes filled.

    Filling holes keeps dark structures inside the body (air in lungs, fluid) in the mask, so only
    the zero-padded surroundings of a scan are cropped away.
    """
    mask = np.any(data != 0, axis=0)
    return ndimage.binary_fill_holes(mask)


def bounding_box(mask: np.ndarray) -> BoundingBox:
    """Half-open bounding box of the True voxels; the whole array when nothing is set."""
    box: BoundingBox = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(np.any(mask, axis=others))
        box.append((int(hits[0]), int(hits[-1]) + 1) if hits.size else (0, mask.shape[axis]))
    return box


def box_slices(box: BoundingBox) -> tuple[slice, ...]:
    return tuple(slice(start, end) for start, end in box)


def crop_to_nonzero(
    data: np.ndarray, seg: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, BoundingBox]:
    """Crop ``data`` (c, ...) and ``seg`` (1, ...) to the non-zero region of the image.

    Inside the crop, background voxels that lie outside the non-zero mask get the label -1 so that
    normalization can leave them out and augmentation can keep them at zero. Without a segmentation
    a map of 0 (inside) and -1 (outside) is returned.
    """
    mask = nonzero_mask(data)
    box = bounding_box(mask)
    window = box_slices(box)
    cropped = data[(slice(None), *window)]
    mask = mask[window]
    if seg is None:
        cropped_seg = np.where(mask, 0, -1).astype(np.int16)[None]
    else:
        cropped_seg = seg[(slice(None), *window)].astype(np.int16, copy=True)
        cropped_seg[(cropped_seg == 0) & ~mask[None]] = -1
    return cropped, cropped_seg, box


def pad_to_multiple(shape: Sequence[float], divisors: Sequence[int]) -> tuple[int, ...]:
    """Smallest shape >= ``shape`` that is a multiple of ``divisors`` per axis."""
    return tuple(int(np.ceil(s / d) * d) for s, d in zip(shape, divisors, strict=True))
