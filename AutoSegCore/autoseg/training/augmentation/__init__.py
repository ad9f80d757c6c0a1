"""Training data augmentation (method.md §5.6) and the background batch stream (§5.5).

``augmentation_geometry`` gives the per-configuration constants (rotation ranges, dummy-2D,
mirror axes, the enlarged patch the sampler must crop); ``build_train_transforms`` /
``build_val_transforms`` the transform chains; ``batch_stream`` runs sampler + transforms in
worker processes.
"""

from __future__ import annotations

from autoseg.training.augmentation.geometry import (
    AugmentationGeometry,
    augmentation_geometry,
    rotation_matrix,
)
from autoseg.training.augmentation.pipeline import build_train_transforms, build_val_transforms
from autoseg.training.augmentation.stream import (
    BatchStream,
    batch_stream,
    default_num_val_workers,
    default_num_workers,
    seed_augmentation,
)
from autoseg.training.augmentation.targets import downsample_seg

__all__ = [
    "AugmentationGeometry",
    "BatchStream",
    "augmentation_geometry",
    "batch_stream",
    "build_train_transforms",
    "build_val_transforms",
    "default_num_val_workers",
    "default_num_workers",
    "downsample_seg",
    "rotation_matrix",
    "seed_augmentation",
]
