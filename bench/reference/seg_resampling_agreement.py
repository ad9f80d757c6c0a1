"""Compare AutoSeg's label-map resampling with nnunetv2's, voxel for voxel, on random label maps.

Runs in nnunetv2's own virtual environment with AutoSeg's source on the path (AutoSeg itself never
imports nnunetv2):

    PYTHONPATH=AutoSegCore /path/to/nnunet-venv/bin/python bench/reference/seg_resampling_agreement.py [SEED]

Blocky label maps (labels -1..3, 2D and 3D, where up to eight labels meet) are resized jointly by
batchgenerators' ``resize_segmentation`` (what nnunetv2's default resampling calls) and
"separately along z" by nnunetv2's ``resample_data_or_seg`` (order_z 0 and 1), with exact
halvings and doublings (every boundary voxel a tie) and random factors; AutoSeg's ``resample_seg``
must give the same labels everywhere. Prints the number of cases and voxels that differ.
"""

from __future__ import annotations

import sys

import numpy as np
from batchgenerators.augmentations.utils import resize_segmentation
from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg
from scipy import ndimage

from autoseg.plans import ResamplingSpec
from autoseg.preprocessing.resampling import resample_seg


def _blocks(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    blocks = int(rng.integers(2, 7))
    coarse = rng.integers(-1, 4, (blocks,) * len(shape))
    factors = [s / blocks for s in shape]
    return ndimage.zoom(coarse, factors, order=0, grid_mode=True, mode="nearest").astype(np.int16)


def _new_shape(shape: tuple[int, ...], trial: int, rng: np.random.Generator) -> tuple[int, ...]:
    if trial % 4 == 0:
        return tuple(s * 2 for s in shape)
    if trial % 4 == 1:
        return tuple(max(1, s // 2) for s in shape)
    return tuple(
        max(1, round(s * f)) for s, f in zip(shape, rng.uniform(0.4, 2.2, len(shape)), strict=True)
    )


def _joint(rng: np.random.Generator, trial: int) -> int:
    ndim = 3 if trial % 3 else 2
    shape = tuple(int(s) for s in rng.integers(4, 30, ndim))
    new_shape = _new_shape(shape, trial, rng)
    seg = _blocks(shape, rng)
    theirs = resize_segmentation(seg, new_shape, order=1)
    ours = resample_seg(seg[None], new_shape, (1.0,) * ndim, (1.0,) * ndim, ResamplingSpec(order=1))
    return int(np.sum(theirs != ours[0]))


def _separate_z(rng: np.random.Generator, order_z: int) -> int:
    shape = (int(rng.integers(3, 10)), *(int(s) for s in rng.integers(6, 30, 2)))
    new_shape = tuple(
        max(1, round(s * f)) for s, f in zip(shape, rng.uniform(0.4, 2.5, 3), strict=True)
    )
    seg = _blocks(shape, rng)
    theirs = resample_data_or_seg(
        seg[None], new_shape, is_seg=True, axis=0, order=1, do_separate_z=True, order_z=order_z
    )
    spec = ResamplingSpec(order=1, order_z=order_z)
    ours = resample_seg(seg[None], new_shape, (5.0, 1.0, 1.0), (1.0, 1.0, 1.0), spec)
    return int(np.sum(theirs != ours))


def main() -> None:
    rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    differences = [_joint(rng, trial) for trial in range(300)]
    differences += [_separate_z(rng, order_z) for _ in range(100) for order_z in (0, 1)]
    cases = sum(d > 0 for d in differences)
    print(f"{len(differences)} cases, {cases} with differences, {sum(differences)} voxels differ")


if __name__ == "__main__":
    main()
