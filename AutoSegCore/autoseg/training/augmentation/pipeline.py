"""The training and validation transform chains of §5.6, in the method's order.

Input batch (from the patch sampler): ``{"data": float32 (b, c, *initial), "seg": int16
(b, 1[, 2], *initial), "keys": [...]}``. Output: ``{"data": float32 tensor (b, c', *patch),
"target": tensor or list of tensors, "keys": [...]}`` where ``target`` is int16 (b, 1, ...) in label
mode or uint8 (b, R[+1], ...) in region mode, one tensor per deep-supervision scale (highest
resolution first) or a single tensor when ``deep_supervision_scales`` is None.

Training, steps 1-16: spatial (with the dummy-2D fold of steps 1/3), noise, blur, brightness,
contrast, low resolution, inverted gamma, gamma, mirroring, image masking, -1 -> 0, cascade input,
regions, deep supervision. Validation runs steps 13-16 only, on final-size patches.
"""

from __future__ import annotations

from collections.abc import Sequence

from batchgenerators.transforms.abstract_transforms import AbstractTransform, Compose
from batchgenerators.transforms.color_transforms import (
    ContrastAugmentationTransform,
    GammaTransform,
)
from batchgenerators.transforms.spatial_transforms import MirrorTransform
from batchgenerators.transforms.utility_transforms import NumpyToTensor, RemoveLabelTransform

from autoseg.training.augmentation.cascade import (
    CascadeToOneHot,
    RandomBinaryMorphology,
    RemoveRandomComponent,
)
from autoseg.training.augmentation.geometry import AugmentationGeometry
from autoseg.training.augmentation.intensity import (
    GaussianBlur,
    GaussianNoise,
    MultiplicativeBrightness,
    SimulateLowResolution,
)
from autoseg.training.augmentation.spatial import SpatialTransform
from autoseg.training.augmentation.targets import MaskImage, RegionTargets, SegToTargets

Scales = Sequence[Sequence[float]]
Regions = Sequence[Sequence[int]]


def _intensity(dummy_2d: bool) -> list[AbstractTransform]:
    """Steps 4-10; contrast and gamma are batchgenerators' (they match the method exactly)."""
    return [
        GaussianNoise(p=0.1, sigma_range=(0.0, 0.1)),
        GaussianBlur(p=0.2, p_per_channel=0.5, sigma_range=(0.5, 1.0)),
        MultiplicativeBrightness(p=0.15, factor_range=(0.75, 1.25)),
        ContrastAugmentationTransform(
            contrast_range=(0.75, 1.25), preserve_range=True, per_channel=True, p_per_sample=0.15
        ),
        SimulateLowResolution(
            p=0.25, p_per_channel=0.5, zoom_range=(0.5, 1.0), ignore_axes=(0,) if dummy_2d else ()
        ),
        GammaTransform(
            (0.7, 1.5), invert_image=True, per_channel=True, retain_stats=True, p_per_sample=0.1
        ),
        GammaTransform(
            (0.7, 1.5), invert_image=False, per_channel=True, retain_stats=True, p_per_sample=0.3
        ),
    ]


def _targets(
    scales: Scales | None,
    regions: Regions | None,
    ignore_label: int | None,
    cascade_labels: Sequence[int],
    corrupt_cascade: bool,
) -> list[AbstractTransform]:
    """Steps 13-16 (+ the random corruption of the cascade input of step 14 for training)."""
    steps: list[AbstractTransform] = [RemoveLabelTransform(-1, 0)]
    if cascade_labels:
        steps.append(CascadeToOneHot(cascade_labels))
        if corrupt_cascade:
            n_onehot = len(cascade_labels)
            steps += [RandomBinaryMorphology(n_onehot), RemoveRandomComponent(n_onehot)]
    if regions:
        steps.append(RegionTargets(regions, ignore_label))
    steps += [SegToTargets(scales), NumpyToTensor(keys=["data", "target"])]
    return steps


def _check_patch(geometry: AugmentationGeometry, patch: tuple[int, ...]) -> None:
    if len(patch) != len(geometry.initial_patch_size) or any(
        p > i for p, i in zip(patch, geometry.initial_patch_size, strict=True)
    ):
        raise ValueError(
            f"patch size {patch} does not fit the initial patch {geometry.initial_patch_size}; "
            "build the geometry with augmentation_geometry(patch_size)"
        )


def build_train_transforms(  # noqa: PLR0913 - the signature is the agreed API
    geometry: AugmentationGeometry,
    patch_size: Sequence[int],
    *,
    deep_supervision_scales: list[tuple[float, ...]] | None,
    regions: tuple[tuple[int, ...], ...] | None,
    ignore_label: int | None,
    mask_channels: tuple[int, ...] = (),
    cascade_labels: tuple[int, ...] = (),
) -> Compose:
    """Training augmentation, steps 1-16 of §5.6 (see the module docstring for the batch format).

    ``mask_channels`` are the image channels normalised with ``use_mask_for_norm`` (zeroed where
    the seg is -1); ``cascade_labels`` the previous stage's foreground labels (cascade only).
    """
    patch = tuple(int(p) for p in patch_size)
    _check_patch(geometry, patch)
    steps: list[AbstractTransform] = [
        SpatialTransform(patch, geometry),
        *_intensity(geometry.dummy_2d),
    ]
    if geometry.mirror_axes:
        steps.append(MirrorTransform(geometry.mirror_axes))
    if mask_channels:
        steps.append(MaskImage(mask_channels))
    steps += _targets(deep_supervision_scales, regions, ignore_label, cascade_labels, True)
    return Compose(steps)


def build_val_transforms(
    *,
    deep_supervision_scales: list[tuple[float, ...]] | None,
    regions: tuple[tuple[int, ...], ...] | None,
    ignore_label: int | None,
    cascade_labels: tuple[int, ...] = (),
) -> Compose:
    """Validation: -1 -> 0, cascade one-hot, regions, deep supervision (steps 13-16), no DA."""
    return Compose(_targets(deep_supervision_scales, regions, ignore_label, cascade_labels, False))
