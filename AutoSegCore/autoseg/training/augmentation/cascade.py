"""Cascade input: the previous stage's segmentation as extra image channels (step 14 of §5.6).

The full-resolution stage of a cascade sees the low-resolution prediction as one-hot channels
(one per foreground label). At inference that prediction has errors, so during training it is
corrupted on purpose: random binary morphology (p 0.4) grows or shrinks labels, and random small
connected components are deleted (p 0.2). Otherwise the network would learn to copy a perfect
previous-stage mask that it never gets at test time.

Morphology with a ball (3D) / disk (2D) of radius r ~ U(1, 8) is computed exactly from Euclidean
distance transforms, which is much faster than a structuring element of up to 17³ voxels:
dilation = voxels within distance r of the label, erosion = voxels farther than r from its
complement. Labels are taken to continue beyond the patch border (edge padding): the border
neither erodes a label nor keeps closing from restoring it.
"""

# ruff: noqa: NPY002
# numpy's *global* random state on purpose: batchgenerators' workers seed only that state (and its
# contrast/gamma/mirror transforms draw from it), so one seeded stream drives the whole pipeline.

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform
from scipy import ndimage


class CascadeToOneHot(AbstractTransform):
    """Append the one-hot of ``seg[:, 1]`` (previous stage) for ``labels`` to ``data``; drop it."""

    def __init__(self, labels: Sequence[int]) -> None:
        self.labels = tuple(int(v) for v in labels)

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        data, seg = data_dict["data"], data_dict["seg"]
        if seg.shape[1] < 2:
            raise ValueError(
                f"cascade augmentation needs seg (b, 2, ...) with the previous stage in channel 1, "
                f"got {seg.shape}"
            )
        previous = seg[:, 1]
        onehot = np.empty((data.shape[0], len(self.labels), *data.shape[2:]), dtype=np.float32)
        for i, label in enumerate(self.labels):
            onehot[:, i] = previous == label
        data_dict["data"] = np.concatenate((data, onehot), axis=1)
        data_dict["seg"] = seg[:, :1]
        return data_dict


def _dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    if not mask.any() or mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= radius


def _erode(mask: np.ndarray, radius: float) -> np.ndarray:
    if not mask.any() or mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(mask) > radius


def _open(mask: np.ndarray, radius: float) -> np.ndarray:
    return _dilate(_erode(mask, radius), radius)


def _close(mask: np.ndarray, radius: float) -> np.ndarray:
    return _erode(_dilate(mask, radius), radius)


MORPHOLOGY: tuple[Callable[[np.ndarray, float], np.ndarray], ...] = (_dilate, _erode, _open, _close)


def morphology(
    operation: Callable[[np.ndarray, float], np.ndarray], mask: np.ndarray, radius: float
):
    """Apply ``operation`` as if the patch continued beyond its border.

    The mask is padded by more than the radius with its edge values (a label touching the border
    goes on outside, so the border neither erodes it nor stops a dilation that closing must undo).
    """
    pad = math.ceil(radius) + 1
    result = operation(np.pad(mask, pad, mode="edge"), radius)
    return result[tuple(slice(pad, pad + n) for n in mask.shape)]


class RandomBinaryMorphology(AbstractTransform):
    """Per sample with p: each of the last ``n_channels`` data channels (the cascade one-hot, in
    random order) with p_per_label gets a random operation.

    Voxels a label gains are removed from the other channels, so the one-hot stays exclusive.
    """

    def __init__(
        self,
        n_channels: int,
        p: float = 0.4,
        p_per_label: float = 0.5,
        radius_range: tuple[float, float] = (1.0, 8.0),
    ) -> None:
        self.n_channels = int(n_channels)
        self.p = p
        self.p_per_label = p_per_label
        self.radius_range = radius_range

    def _one(self, onehot: np.ndarray) -> None:
        for c in np.random.permutation(onehot.shape[0]):
            if np.random.uniform() >= self.p_per_label:
                continue
            operation = MORPHOLOGY[np.random.randint(len(MORPHOLOGY))]
            mask = onehot[c] > 0
            result = morphology(operation, mask, np.random.uniform(*self.radius_range))
            gained = result & ~mask
            for other in range(onehot.shape[0]):
                if other != c:
                    onehot[other][gained] = 0
            onehot[c] = result

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        data = data_dict["data"]
        first = data.shape[1] - self.n_channels
        for b in range(data.shape[0]):
            if np.random.uniform() < self.p:
                self._one(data[b, first:])
        return data_dict


class RemoveRandomComponent(AbstractTransform):
    """Per sample with p: each of the last ``n_channels`` data channels (the cascade one-hot) with
    p_per_label loses one random small connected component.

    Only components smaller than ``max_fraction`` of the patch are candidates (deleting a large
    one would remove the structure the cascade is meant to refine); nothing is filled in.
    """

    def __init__(
        self,
        n_channels: int,
        p: float = 0.2,
        p_per_label: float = 0.5,
        max_fraction: float = 0.15,
    ) -> None:
        self.n_channels = int(n_channels)
        self.p = p
        self.p_per_label = p_per_label
        self.max_fraction = max_fraction

    def _one(self, onehot: np.ndarray) -> None:
        for c in range(onehot.shape[0]):
            if np.random.uniform() >= self.p_per_label:
                continue
            components, count = ndimage.label(onehot[c] > 0)
            if count == 0:
                continue
            sizes = np.bincount(components.reshape(-1))[1:]
            small = np.flatnonzero(sizes < self.max_fraction * components.size) + 1
            if small.size:
                onehot[c][components == small[np.random.randint(small.size)]] = 0

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        data = data_dict["data"]
        first = data.shape[1] - self.n_channels
        for b in range(data.shape[0]):
            if np.random.uniform() < self.p:
                self._one(data[b, first:])
        return data_dict
