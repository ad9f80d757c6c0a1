"""An analytic stand-in for GPU memory: the number of activations a U-Net stores for one patch.

The planner grows patches and batches against this count instead of building networks, which keeps
planning free of torch and takes microseconds. It counts one output tensor per convolution block in
the encoder and decoder, the transposed-convolution outputs and the segmentation head, exactly as
the method's reference values were calibrated (deep supervision off, batch size 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autoseg.plans import ArchitectureSpec


def _stage_sizes(
    patch_size: Sequence[int], strides: Sequence[Sequence[int]]
) -> list[tuple[int, ...]]:
    sizes = []
    size = tuple(int(p) for p in patch_size)
    for stride in strides:
        size = tuple(s // st for s, st in zip(size, stride, strict=True))
        sizes.append(size)
    return sizes


def _voxels(size: Sequence[int]) -> int:
    return int(np.prod(size, dtype=np.int64))


def _plain_encoder(arch: ArchitectureSpec, sizes: list[tuple[int, ...]]) -> int:
    return sum(
        n_conv * features * _voxels(size)
        for n_conv, features, size in zip(
            arch.n_blocks_per_stage, arch.features_per_stage, sizes, strict=True
        )
    )


def _residual_encoder(
    arch: ArchitectureSpec, patch_size: Sequence[int], sizes: list[tuple[int, ...]]
) -> int:
    total = arch.features_per_stage[0] * _voxels(patch_size)  # the stem
    in_features = arch.features_per_stage[0]
    previous_size = tuple(int(p) for p in patch_size)
    for n_blocks, features, size in zip(
        arch.n_blocks_per_stage, arch.features_per_stage, sizes, strict=True
    ):
        block = 2 * features * _voxels(size)
        projection = (
            features * _voxels(size) if (in_features != features or size != previous_size) else 0
        )
        total += n_blocks * block + projection
        in_features, previous_size = features, size
    return total


def _decoder(arch: ArchitectureSpec, sizes: list[tuple[int, ...]], num_classes: int) -> int:
    total = 0
    n_decoder_stages = arch.n_stages - 1
    for s in range(n_decoder_stages):
        skip = n_decoder_stages - 1 - s  # deepest decoder stage first
        skip_voxels = _voxels(sizes[skip])
        features = arch.features_per_stage[skip]
        total += arch.n_conv_per_stage_decoder[s] * features * skip_voxels  # conv blocks
        total += features * skip_voxels  # transposed-conv output
    return total + num_classes * _voxels(sizes[0])  # final segmentation head


def estimate_feature_map_size(
    arch: ArchitectureSpec, patch_size: Sequence[int], num_classes: int
) -> int:
    """Activations stored by ``arch`` for one patch; proportional to training memory."""
    sizes = _stage_sizes(patch_size, arch.strides)
    if arch.network == "ResidualEncoderUNet":
        encoder = _residual_encoder(arch, patch_size, sizes)
    else:
        encoder = _plain_encoder(arch, sizes)
    return encoder + _decoder(arch, sizes, num_classes)
