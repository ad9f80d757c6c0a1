"""Intensity augmentations of §5.6 that batchgenerators (v1) does not implement the method's way.

- :class:`GaussianNoise` (step 4): σ ~ U(0, 0.1) used as the standard deviation, the same σ for
  all channels. batchgenerators draws σ from Python's ``random`` module, which its workers do not
  seed, so runs would not be reproducible.
- :class:`GaussianBlur` (step 5): per channel with p 0.5, σ ~ U(0.5, 1) drawn per axis; separable
  kernel truncated at 6σ with reflect padding (the edge voxel is not repeated, i.e. scipy's
  ``mirror`` mode, which is what ``reflect`` means for a torch-style convolution).
- :class:`MultiplicativeBrightness` (step 6): per-channel factor from the "BGContrast" rule
  (:func:`bg_contrast`); batchgenerators draws U(0.75, 1.25) instead.
- :class:`SimulateLowResolution` (step 8): per channel with p 0.5, one s ~ U(0.5, 1) for all axes
  (axis 0 kept in dummy-2D), nearest-exact downsampling to ``round(s·n)`` and *linear*
  upsampling back (batchgenerators upsamples cubically).

Contrast (step 7) and both gamma steps (9, 10) match the method in batchgenerators and are used
from there (see pipeline.py). All draws use numpy's global random state, like batchgenerators'
transforms, so that the worker seeding of the augmenter makes a whole run reproducible. Every
transform first decides per sample whether it fires (``np.random.uniform() < p``).
"""

# ruff: noqa: NPY002
# numpy's *global* random state on purpose: batchgenerators' workers seed only that state (and its
# contrast/gamma/mirror transforms draw from it), so one seeded stream drives the whole pipeline.

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from batchgenerators.transforms.abstract_transforms import AbstractTransform
from scipy import ndimage
from torch.nn import functional


def bg_contrast(low: float, high: float) -> float:
    """The "BGContrast" draw: with p 0.5 U(low, 1), else U(1, high) (when low < 1 < high).

    Splitting at 1 makes darkening and brightening equally likely although ``1 - low`` and
    ``high - 1`` differ (e.g. 0.7 .. 1.5 for gamma).
    """
    if np.random.uniform() < 0.5 and low < 1:
        return float(np.random.uniform(low, 1.0))
    return float(np.random.uniform(max(low, 1.0), high))


class GaussianNoise(AbstractTransform):
    """Additive zero-mean Gaussian noise, one σ ~ U(range) per sample shared by its channels."""

    def __init__(self, p: float = 0.1, sigma_range: tuple[float, float] = (0.0, 0.1)) -> None:
        self.p = p
        self.sigma_range = sigma_range

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        data = data_dict["data"]
        for b in range(data.shape[0]):
            if np.random.uniform() < self.p:
                sigma = np.random.uniform(*self.sigma_range)
                data[b] += (np.random.standard_normal(data[b].shape) * sigma).astype(np.float32)
        return data_dict


class GaussianBlur(AbstractTransform):
    """Separable Gaussian blur of random channels with an independent σ per axis and channel."""

    def __init__(
        self,
        p: float = 0.2,
        p_per_channel: float = 0.5,
        sigma_range: tuple[float, float] = (0.5, 1.0),
        truncate: float = 6.0,
    ) -> None:
        self.p = p
        self.p_per_channel = p_per_channel
        self.sigma_range = sigma_range
        self.truncate = truncate

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        data = data_dict["data"]
        spatial = data.ndim - 2
        for b in range(data.shape[0]):
            if np.random.uniform() >= self.p:
                continue
            for c in range(data.shape[1]):
                if np.random.uniform() < self.p_per_channel:
                    sigma = np.random.uniform(*self.sigma_range, size=spatial)
                    data[b, c] = ndimage.gaussian_filter(
                        data[b, c], sigma, mode="mirror", truncate=self.truncate
                    )
        return data_dict


class MultiplicativeBrightness(AbstractTransform):
    """Multiply each channel by its own BGContrast(0.75, 1.25) factor."""

    def __init__(self, p: float = 0.15, factor_range: tuple[float, float] = (0.75, 1.25)) -> None:
        self.p = p
        self.factor_range = factor_range

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        data = data_dict["data"]
        for b in range(data.shape[0]):
            if np.random.uniform() < self.p:
                for c in range(data.shape[1]):
                    data[b, c] *= np.float32(bg_contrast(*self.factor_range))
        return data_dict


def _nearest_then_linear(channel: np.ndarray, small: tuple[int, ...]) -> np.ndarray:
    """Downsample (nearest-exact) to ``small`` and upsample (bi/trilinear) back to the shape."""
    volume = torch.from_numpy(np.ascontiguousarray(channel))[None, None]
    low = functional.interpolate(volume, size=small, mode="nearest-exact")
    mode = "trilinear" if channel.ndim == 3 else "bilinear"
    back = functional.interpolate(low, size=channel.shape, mode=mode, align_corners=False)
    return back[0, 0].numpy()


class SimulateLowResolution(AbstractTransform):
    """Lose detail as a coarser scan would: down- and upsample random channels."""

    def __init__(
        self,
        p: float = 0.25,
        p_per_channel: float = 0.5,
        zoom_range: tuple[float, float] = (0.5, 1.0),
        ignore_axes: tuple[int, ...] = (),
    ) -> None:
        self.p = p
        self.p_per_channel = p_per_channel
        self.zoom_range = zoom_range
        self.ignore_axes = ignore_axes

    def _small_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        zoom = np.random.uniform(*self.zoom_range)
        return tuple(
            n if axis in self.ignore_axes else max(1, round(n * zoom))
            for axis, n in enumerate(shape)
        )

    def __call__(self, **data_dict: Any) -> dict[str, Any]:
        data = data_dict["data"]
        for b in range(data.shape[0]):
            if np.random.uniform() >= self.p:
                continue
            for c in range(data.shape[1]):
                if np.random.uniform() < self.p_per_channel:
                    small = self._small_shape(data.shape[2:])
                    data[b, c] = _nearest_then_linear(data[b, c], small)
        return data_dict
