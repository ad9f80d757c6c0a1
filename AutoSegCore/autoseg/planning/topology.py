"""Network topology from spacing and patch size: how often to downsample each axis, and with which kernels.

The rule keeps receptive fields roughly isotropic in physical space: an axis is only downsampled while
its spacing is less than twice the finest spacing, and convolutions along a coarse axis stay 1-wide
until pooling has brought its spacing within a factor two of the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoseg.geometry import pad_to_multiple


@dataclass(frozen=True)
class Topology:
    """Result of the topology search for one patch size."""

    pool_steps_per_axis: tuple[int, ...]
    strides: tuple[tuple[int, ...], ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    patch_size: tuple[int, ...]

    @property
    def n_stages(self) -> int:
        return len(self.strides)

    @property
    def divisibility(self) -> tuple[int, ...]:
        """Each patch edge must be a multiple of this to survive every downsampling exactly."""
        return tuple(2**n for n in self.pool_steps_per_axis)


def _poolable_axes(spacing: Sequence[float], size: Sequence[float], min_edge: int) -> list[int]:
    large_enough = [i for i in range(len(size)) if size[i] >= 2 * min_edge]
    if not large_enough:
        return []
    finest = min(spacing[i] for i in large_enough)
    axes = [i for i in large_enough if spacing[i] / finest < 2]
    # A lone poolable axis must leave room for a meaningful bottleneck along it.
    if len(axes) == 1 and size[axes[0]] < 3 * min_edge:
        return []
    return axes


def compute_topology(
    spacing: Sequence[float], patch_size: Sequence[float], min_edge: int = 4
) -> Topology:
    """Pooling strides and conv kernels per stage; the patch is padded up to the divisibility."""
    dims = len(spacing)
    current_spacing = [float(s) for s in spacing]
    current_size = [float(p) for p in patch_size]
    kernel = [1] * dims
    strides: list[tuple[int, ...]] = [(1,) * dims]
    kernels: list[tuple[int, ...]] = []
    pool_steps = [0] * dims
    while axes := _poolable_axes(current_spacing, current_size, min_edge):
        finest = min(current_spacing)
        kernel = [
            3 if k == 3 or current_spacing[d] / finest < 2 else 1 for d, k in enumerate(kernel)
        ]
        stride = tuple(2 if d in axes else 1 for d in range(dims))
        for d in axes:
            pool_steps[d] += 1
            current_spacing[d] *= 2
            current_size[d] = math.ceil(current_size[d] / 2)
        strides.append(stride)
        kernels.append(tuple(kernel))
    kernels.append((3,) * dims)
    divisibility = [2**n for n in pool_steps]
    return Topology(
        pool_steps_per_axis=tuple(pool_steps),
        strides=tuple(strides),
        kernel_sizes=tuple(kernels),
        patch_size=pad_to_multiple(patch_size, divisibility),
    )
