"""Experiment planning: from a dataset fingerprint to the configurations of the plans file.

The planner picks a target spacing, orders the axes so the coarsest comes first, and for every
configuration (2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres) grows the largest patch whose
activation count fits the GPU memory budget, then the batch size that fills the rest of it, capped so
one batch never covers more than a fraction of the dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from autoseg.channel_schemes import normalization_scheme
from autoseg.geometry import ANISOTROPY_THRESHOLD, compute_new_shape, inverse_permutation
from autoseg.planning.fingerprint import DatasetFingerprint
from autoseg.planning.memory_model import estimate_feature_map_size
from autoseg.planning.presets import DEFAULT_PLANS_NAME, PRESETS, PlannerPreset
from autoseg.planning.topology import Topology, compute_topology
from autoseg.plans import (
    ArchitectureSpec,
    ConfigurationPlan,
    IntensityStats,
    Plans,
    PreprocessingSpec,
)

BASE_FEATURES = 32
MAX_FEATURES = {2: 512, 3: 320}
REFERENCE_BATCH = {2: 12, 3: 2}
INITIAL_PATCH_VOXELS = {2: 2048**2, 3: 256**3}
MIN_BATCH_SIZE = 2
LOWRES_CREATION_THRESHOLD = 0.25
LOWRES_SPACING_STEP = 1.03
MASK_FOR_NORM_CROP_THRESHOLD = 0.75


@dataclass(frozen=True)
class PlanningTask:
    """What the planner needs to know about a dataset besides its fingerprint."""

    dataset_name: str
    channel_names: tuple[str, ...]
    num_label_entries: int
    num_training: int
    image_reader_writer: str


@dataclass(frozen=True)
class PlannerOptions:
    preset: PlannerPreset = PRESETS["default"]
    overwrite_target_spacing: tuple[float, ...] | None = None
    suppress_transpose: bool = False
    plans_name: str | None = None


def fullres_target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """Median spacing, except that a strongly anisotropic axis gets its 10th percentile spacing.

    Resampling every case to the median of a very coarse axis would throw away resolution that most
    cases have; the 10th percentile keeps it without inventing detail.
    """
    target = np.median(spacings, axis=0)
    median_size = np.median(shapes, axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    anisotropic_spacing = target[worst] > ANISOTROPY_THRESHOLD * max(target[others])
    few_slices = median_size[worst] * ANISOTROPY_THRESHOLD < min(median_size[others])
    if anisotropic_spacing and few_slices:
        coarse = float(np.percentile(spacings[:, worst], 10))
        finest_other = float(max(target[others]))
        if coarse < finest_other:
            coarse = max(finest_other, coarse) + 1e-5
        target[worst] = coarse
    return target


def transpose_for(spacing: Sequence[float], suppress: bool = False) -> tuple[int, ...]:
    """Axis order with the coarsest axis first, so 2D networks slice along it."""
    if suppress:
        return tuple(range(len(spacing)))
    coarsest = int(np.argmax(spacing))
    return (coarsest, *[i for i in range(len(spacing)) if i != coarsest])


def _architecture(topology: Topology, preset: PlannerPreset) -> ArchitectureSpec:
    dims = len(topology.patch_size)
    n_stages = topology.n_stages
    return ArchitectureSpec(
        network=preset.network,
        features_per_stage=tuple(
            min(BASE_FEATURES * 2**i, MAX_FEATURES[dims]) for i in range(n_stages)
        ),
        kernel_sizes=topology.kernel_sizes,
        strides=topology.strides,
        n_blocks_per_stage=preset.blocks_for(n_stages),
        n_conv_per_stage_decoder=(preset.decoder_convs,) * (n_stages - 1),
    )


@dataclass(frozen=True)
class SizedNetwork:
    """Patch, batch and topology chosen for one configuration."""

    patch_size: tuple[int, ...]
    batch_size: int
    architecture: ArchitectureSpec


class _PatchSizer:
    """Shrinks a patch until the network's activation count fits the memory budget."""

    def __init__(self, preset: PlannerPreset, dims: int, num_classes: int) -> None:
        self.preset = preset
        self.dims = dims
        self.num_classes = num_classes
        reference = (
            preset.reference_activations_3d if dims == 3 else preset.reference_activations_2d
        )
        self.reference = reference * preset.gpu_memory_target_gb / preset.reference_memory_gb

    def estimate(self, topology: Topology) -> tuple[ArchitectureSpec, int]:
        arch = _architecture(topology, self.preset)
        return arch, estimate_feature_map_size(arch, topology.patch_size, self.num_classes)

    def too_large(self, estimate: int) -> bool:
        if self.preset.shrink_against_reference_batch:
            return estimate / REFERENCE_BATCH[self.dims] * 2 > self.reference
        return estimate > self.reference

    def batch_size(self, estimate: int, patch: Sequence[int], dataset_voxels: float) -> int:
        batch = round(self.reference / estimate * REFERENCE_BATCH[self.dims])
        patch_voxels = float(np.prod(patch, dtype=np.float64))
        cap = round(dataset_voxels * self.preset.max_dataset_covered / patch_voxels)
        return max(min(batch, cap), MIN_BATCH_SIZE)


def _initial_patch(spacing: np.ndarray, median_shape: np.ndarray) -> np.ndarray:
    dims = len(spacing)
    inverse = 1 / spacing
    scale = (INITIAL_PATCH_VOXELS[dims] / np.prod(inverse)) ** (1 / dims)
    patch = np.array([round(v) for v in inverse * scale], dtype=np.float64)
    return np.minimum(patch, median_shape)


def size_network(
    spacing: Sequence[float],
    median_shape: Sequence[float],
    dataset_voxels: float,
    num_classes: int,
    preset: PlannerPreset,
) -> SizedNetwork:
    """Largest patch (aspect following 1/spacing, capped at the median shape) that fits, and its batch."""
    spacing_arr = np.asarray(spacing, dtype=np.float64)
    median = np.asarray(median_shape, dtype=np.float64)
    sizer = _PatchSizer(preset, len(spacing_arr), num_classes)
    topology = compute_topology(spacing_arr, _initial_patch(spacing_arr, median))
    arch, estimate = sizer.estimate(topology)
    while sizer.too_large(estimate):
        patch = list(topology.patch_size)
        # Shrink the axis that is largest relative to the data; ties go to the last axis.
        axis = int(np.argsort(np.asarray(patch) / median, kind="stable")[-1])
        trial = list(patch)
        trial[axis] -= topology.divisibility[axis]
        patch[axis] -= compute_topology(spacing_arr, trial).divisibility[axis]
        topology = compute_topology(spacing_arr, patch)
        arch, estimate = sizer.estimate(topology)
    batch = sizer.batch_size(estimate, topology.patch_size, dataset_voxels)
    return SizedNetwork(topology.patch_size, batch, arch)


def _preprocessing_spec(
    spacing: Sequence[float], task: PlanningTask, fingerprint: DatasetFingerprint
) -> PreprocessingSpec:
    schemes = tuple(normalization_scheme(name) for name in task.channel_names)
    cropped_a_lot = fingerprint.median_relative_size_after_cropping < MASK_FOR_NORM_CROP_THRESHOLD
    # Only z-score keeps voxels outside the body at zero, so only it can normalise inside a mask.
    use_mask = tuple(bool(cropped_a_lot and scheme == "ZScore") for scheme in schemes)
    return PreprocessingSpec(
        spacing=tuple(float(s) for s in spacing),
        normalization_schemes=schemes,
        use_mask_for_norm=use_mask,
    )


@dataclass(frozen=True)
class _PlanContext:
    task: PlanningTask
    fingerprint: DatasetFingerprint
    options: PlannerOptions
    plans_name: str


def _configuration(
    context: _PlanContext,
    name: str,
    data_identifier: str,
    spacing: Sequence[float],
    median_shape: Sequence[float],
    dataset_voxels: float,
) -> ConfigurationPlan:
    sized = size_network(
        spacing,
        median_shape,
        dataset_voxels,
        context.task.num_label_entries,
        context.options.preset,
    )
    return ConfigurationPlan(
        name=name,
        data_identifier=data_identifier,
        patch_size=sized.patch_size,
        batch_size=sized.batch_size,
        median_image_size_in_voxels=tuple(float(m) for m in median_shape),
        batch_dice=False,
        preprocessing=_preprocessing_spec(spacing, context.task, context.fingerprint),
        architecture=sized.architecture,
    )


def _lowres_configuration(
    context: _PlanContext, fullres: ConfigurationPlan, median_shape: np.ndarray
) -> ConfigurationPlan | None:
    """Coarsen the spacing in 3% steps until a patch covers a quarter of the (shrunken) image.

    Only worth it when the full-resolution patch sees less than a quarter of a typical image, and
    dropped again when it would not at least halve the number of voxels.
    """
    fullres_spacing = np.asarray(fullres.spacing, dtype=np.float64)
    patch_voxels = float(np.prod(fullres.patch_size, dtype=np.float64))
    median_voxels = float(np.prod(median_shape, dtype=np.float64))
    if patch_voxels / median_voxels >= LOWRES_CREATION_THRESHOLD:
        return None
    spacing = fullres_spacing.copy()
    lowres: ConfigurationPlan | None = None
    while patch_voxels / median_voxels < LOWRES_CREATION_THRESHOLD:
        coarse_axes = spacing.max() / spacing > 2
        spacing[coarse_axes if coarse_axes.any() else slice(None)] *= LOWRES_SPACING_STEP
        scaled_shape = fullres_spacing / spacing * median_shape
        median_voxels = float(np.prod(scaled_shape, dtype=np.float64))
        lowres = _configuration(
            context,
            "3d_lowres",
            f"{context.plans_name}_3d_lowres",
            spacing,
            [round(s) for s in scaled_shape],
            median_voxels * context.task.num_training,
        )
        patch_voxels = float(np.prod(lowres.patch_size, dtype=np.float64))
    if np.prod(median_shape, dtype=np.float64) / median_voxels < 2:
        return None
    return lowres


def _resampled_median_shape(
    fingerprint: DatasetFingerprint, target_spacing: np.ndarray
) -> np.ndarray:
    shapes = [
        compute_new_shape(shape, spacing, target_spacing)
        for shape, spacing in zip(fingerprint.shapes_after_crop, fingerprint.spacings, strict=True)
    ]
    return np.median(np.asarray(shapes, dtype=np.float64), axis=0)


def _intensity_stats(fingerprint: DatasetFingerprint) -> dict[str, IntensityStats]:
    return dict(fingerprint.foreground_intensity_properties_per_channel)


def plan_experiment(
    fingerprint: DatasetFingerprint, task: PlanningTask, options: PlannerOptions | None = None
) -> Plans:
    """Create the plans (2d, 3d_fullres and, when useful, 3d_lowres + 3d_cascade_fullres)."""
    options = options or PlannerOptions()
    preset = options.preset
    plans_name = options.plans_name or preset.plans_name
    context = _PlanContext(task, fingerprint, options, plans_name)
    spacings = np.asarray(fingerprint.spacings, dtype=np.float64)
    fullres_spacing = fullres_target_spacing(
        spacings, np.asarray(fingerprint.shapes_after_crop, dtype=np.float64)
    )
    forward = transpose_for(fullres_spacing, options.suppress_transpose)
    median_shape = _resampled_median_shape(fingerprint, fullres_spacing)[list(forward)]
    spacing_t = fullres_spacing[list(forward)]
    if options.overwrite_target_spacing is not None:
        spacing_t = np.asarray(options.overwrite_target_spacing, dtype=np.float64)
    dataset_voxels = float(np.prod(median_shape, dtype=np.float64)) * task.num_training
    # The 2d and 3d_fullres data do not depend on the preset, so all presets share them.
    shared_prefix = DEFAULT_PLANS_NAME
    configurations: dict[str, ConfigurationPlan] = {}
    if median_shape[0] != 1:
        fullres = _configuration(
            context,
            "3d_fullres",
            f"{shared_prefix}_3d_fullres",
            spacing_t,
            median_shape,
            dataset_voxels,
        )
        lowres = _lowres_configuration(context, fullres, median_shape)
        fullres = replace(fullres, batch_dice=lowres is not None)
        configurations["3d_fullres"] = fullres
        if lowres is not None:
            configurations["3d_lowres"] = replace(lowres, next_stage="3d_cascade_fullres")
            configurations["3d_cascade_fullres"] = replace(
                fullres,
                name="3d_cascade_fullres",
                previous_stage="3d_lowres",
                inherits_from="3d_fullres",
            )
    configurations["2d"] = replace(
        _configuration(
            context,
            "2d",
            f"{shared_prefix}_2d",
            fullres_spacing[list(forward)][1:],
            median_shape[1:],
            dataset_voxels,
        ),
        batch_dice=True,
    )
    return Plans(
        dataset_name=task.dataset_name,
        plans_name=plans_name,
        image_reader_writer=task.image_reader_writer,
        transpose_forward=forward,
        transpose_backward=inverse_permutation(forward),
        original_median_spacing_after_transp=tuple(
            float(s) for s in np.median(spacings, 0)[list(forward)]
        ),
        original_median_shape_after_transp=tuple(
            float(s) for s in np.median(np.asarray(fingerprint.shapes_after_crop), 0)[list(forward)]
        ),
        foreground_intensity_properties_per_channel=_intensity_stats(fingerprint),
        configurations=configurations,
        experiment_planner_used=preset.name,
    )
