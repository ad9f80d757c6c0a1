"""From the augmented label map to the loss targets (steps 12, 15 and 16 of §5.6).

- :class:`MaskImage`: channels normalised inside the non-zero mask are set to 0 where the seg is
  -1 (outside that mask, or sampled outside the image), so the network never sees intensities that
  normalisation did not define.
- :class:`RegionTargets`: region training predicts one sigmoid channel per region (a region is a
  set of labels); the ignore label becomes an extra last channel the loss uses as a mask.
- :func:`downsample_seg` / :class:`SegToTargets`: deep supervision needs one target per decoder
  output. Labels are never interpolated: nearest-exact downsampling, output index ``i`` takes input
  ``floor((i + 0.5) / scale)`` along each axis (the voxel whose centre is nearest).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform


class MaskImage(AbstractTransform):
    """Set ``data[:, c]`` to 0 where ``seg[:, 0] < 0`` for every ``c`` in ``channels``."""

    def __init__(self, channels: Sequence[int]) -> None:
        self.channels = tuple(int(c) for c in channels)

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        data, seg = data_dict["data"], data_dict["seg"]
        outside = seg[:, 0] < 0
        if outside.any():
            for c in self.channels:
                np.copyto(data[:, c], 0.0, where=outside)
        return data_dict


class RegionTargets(AbstractTransform):
    """Label map (b, 1, ...) -> uint8 (b, R[+1], ...): channel r is "label in region r"."""

    def __init__(self, regions: Sequence[Sequence[int]], ignore_label: int | None) -> None:
        self.regions = tuple(tuple(int(v) for v in region) for region in regions)
        self.ignore_label = ignore_label

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        labels = data_dict["seg"][:, 0]
        n_out = len(self.regions) + (self.ignore_label is not None)
        out = np.empty((labels.shape[0], n_out, *labels.shape[1:]), dtype=np.uint8)
        for r, region in enumerate(self.regions):
            member = labels == region[0] if len(region) == 1 else np.isin(labels, region)
            out[:, r] = member
        if self.ignore_label is not None:
            out[:, -1] = labels == self.ignore_label
        data_dict["seg"] = out
        return data_dict


def _nearest_indices(n_in: int, scale: float) -> np.ndarray:
    n_out = max(1, round(n_in * scale))
    return np.minimum(((np.arange(n_out) + 0.5) / scale).astype(np.intp), n_in - 1)


def downsample_seg(seg: np.ndarray, scales: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """One nearest-exact copy of ``seg`` (b, c, *spatial) per scale, in the order given.

    The output size along an axis is ``round(n·scale)``. A scale of all ones returns ``seg``
    itself (no copy).
    """
    spatial = seg.shape[2:]
    out = []
    for scale in scales:
        if len(scale) != len(spatial):
            raise ValueError(f"scale {tuple(scale)} does not match seg spatial shape {spatial}")
        if all(s == 1 for s in scale):
            out.append(seg)
            continue
        index = np.ix_(*[_nearest_indices(n, s) for n, s in zip(spatial, scale, strict=True)])
        out.append(seg[(slice(None), slice(None), *index)])
    return out


class SegToTargets(AbstractTransform):
    """Move ``seg`` to ``target``: a list (one per deep-supervision scale) or the array itself."""

    def __init__(self, deep_supervision_scales: Sequence[Sequence[float]] | None) -> None:
        self.scales = (
            None
            if deep_supervision_scales is None
            else [tuple(float(s) for s in scale) for scale in deep_supervision_scales]
        )

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        seg = data_dict.pop("seg")
        data_dict["target"] = seg if self.scales is None else downsample_seg(seg, self.scales)
        data_dict["data"] = np.asarray(data_dict["data"], dtype=np.float32)
        return data_dict
