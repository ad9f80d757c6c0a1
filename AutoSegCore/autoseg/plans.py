"""The plans file: a versioned JSON contract between planning, preprocessing, training and inference.

The file stays human-readable and close to nnU-Net's layout so users can read and hand-edit it. In
memory it is a tree of frozen dataclasses; every consumer receives only the slice it needs (for
example a ``PreprocessingSpec``), never the whole file. A configuration may name another one in
``inherits_from``: the file then stores only the keys that differ, and loading resolves the
inheritance once, so code never sees an unresolved configuration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from autoseg.atomic import write_json_atomic
from autoseg.errors import AutoSegError

SCHEMA_VERSION = 1
PLANS_FORMAT = "autoseg-plans"


@dataclass(frozen=True)
class ResamplingSpec:
    """How one kind of array is resampled: spline order in-plane and along the low-resolution axis."""

    order: int
    order_z: int = 0
    force_separate_z: bool | None = None


@dataclass(frozen=True)
class PreprocessingSpec:
    """Everything preprocessing needs for one configuration, in transposed axis order."""

    spacing: tuple[float, ...]
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    resampling_data: ResamplingSpec = ResamplingSpec(order=3)
    resampling_seg: ResamplingSpec = ResamplingSpec(order=1)
    resampling_probabilities: ResamplingSpec = ResamplingSpec(order=1)


@dataclass(frozen=True)
class ArchitectureSpec:
    """A U-Net topology; ``network`` names an entry of the network registry."""

    network: str
    features_per_stage: tuple[int, ...]
    kernel_sizes: tuple[tuple[int, ...], ...]
    strides: tuple[tuple[int, ...], ...]
    n_blocks_per_stage: tuple[int, ...]
    n_conv_per_stage_decoder: tuple[int, ...]
    conv_bias: bool = True
    norm: str = "InstanceNorm"
    nonlin: str = "LeakyReLU"

    @property
    def n_stages(self) -> int:
        return len(self.features_per_stage)


@dataclass(frozen=True)
class ConfigurationPlan:
    """One fully resolved configuration (2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres, ...)."""

    name: str
    data_identifier: str
    patch_size: tuple[int, ...]
    batch_size: int
    median_image_size_in_voxels: tuple[float, ...]
    batch_dice: bool
    preprocessing: PreprocessingSpec
    architecture: ArchitectureSpec
    previous_stage: str | None = None
    next_stage: str | None = None
    inherits_from: str | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        return self.preprocessing.spacing

    @property
    def is_2d(self) -> bool:
        return len(self.patch_size) == 2


@dataclass(frozen=True)
class IntensityStats:
    """Foreground intensity statistics of one channel over the training set (used by CT normalization)."""

    mean: float
    median: float
    std: float
    min: float
    max: float
    percentile_00_5: float
    percentile_99_5: float


@dataclass(frozen=True)
class Plans:
    """A dataset's plans: shared facts plus the resolved configurations."""

    dataset_name: str
    plans_name: str
    image_reader_writer: str
    transpose_forward: tuple[int, ...]
    transpose_backward: tuple[int, ...]
    original_median_spacing_after_transp: tuple[float, ...]
    original_median_shape_after_transp: tuple[float, ...]
    foreground_intensity_properties_per_channel: dict[str, IntensityStats]
    configurations: dict[str, ConfigurationPlan]
    experiment_planner_used: str = "default"
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def configuration(self, name: str) -> ConfigurationPlan:
        """Return a configuration by name, or explain which ones exist."""
        try:
            return self.configurations[name]
        except KeyError:
            known = ", ".join(self.configurations) or "none"
            raise AutoSegError(
                f"plans '{self.plans_name}' of {self.dataset_name} have no configuration '{name}' "
                f"(available: {known}). Fix: choose one of them or re-run plan_experiment."
            ) from None

    def intensity_stats(self) -> list[IntensityStats]:
        """Per-channel statistics in channel order."""
        keys = sorted(self.foreground_intensity_properties_per_channel, key=int)
        return [self.foreground_intensity_properties_per_channel[k] for k in keys]

    def to_json(self) -> dict[str, Any]:
        """Serialise; configurations that inherit store only the keys that differ from the parent."""
        configurations = {
            name: _configuration_to_json(config, self.configurations)
            for name, config in self.configurations.items()
        }
        return {
            "format": PLANS_FORMAT,
            "schema_version": self.schema_version,
            "dataset_name": self.dataset_name,
            "plans_name": self.plans_name,
            "experiment_planner_used": self.experiment_planner_used,
            "image_reader_writer": self.image_reader_writer,
            "transpose_forward": list(self.transpose_forward),
            "transpose_backward": list(self.transpose_backward),
            "original_median_spacing_after_transp": list(self.original_median_spacing_after_transp),
            "original_median_shape_after_transp": list(self.original_median_shape_after_transp),
            "foreground_intensity_properties_per_channel": {
                k: asdict(v) for k, v in self.foreground_intensity_properties_per_channel.items()
            },
            "configurations": configurations,
            **self.extra,
        }

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "plans") -> Plans:
        return _plans_from_json(data, source)

    @classmethod
    def load(cls, path: Path) -> Plans:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AutoSegError(
                f"{path}: plans file not found. Fix: run 'autoseg plan_experiment' for this dataset."
            ) from None
        except json.JSONDecodeError as error:
            raise AutoSegError(
                f"{path}: not valid JSON ({error}). Fix: repair the file or re-run plan_experiment."
            ) from None
        return _plans_from_json(data, str(path))


_TOP_LEVEL_KEYS = {
    "format",
    "schema_version",
    "dataset_name",
    "plans_name",
    "experiment_planner_used",
    "image_reader_writer",
    "transpose_forward",
    "transpose_backward",
    "original_median_spacing_after_transp",
    "original_median_shape_after_transp",
    "foreground_intensity_properties_per_channel",
    "configurations",
}


def _configuration_to_dict(config: ConfigurationPlan) -> dict[str, Any]:
    prep = config.preprocessing
    arch = asdict(config.architecture)
    return {
        "data_identifier": config.data_identifier,
        "patch_size": list(config.patch_size),
        "batch_size": config.batch_size,
        "median_image_size_in_voxels": list(config.median_image_size_in_voxels),
        "spacing": list(prep.spacing),
        "batch_dice": config.batch_dice,
        "normalization_schemes": list(prep.normalization_schemes),
        "use_mask_for_norm": list(prep.use_mask_for_norm),
        "resampling": {
            "data": asdict(prep.resampling_data),
            "seg": asdict(prep.resampling_seg),
            "probabilities": asdict(prep.resampling_probabilities),
        },
        "architecture": {
            **arch,
            "n_stages": config.architecture.n_stages,
            "kernel_sizes": [list(k) for k in config.architecture.kernel_sizes],
            "strides": [list(s) for s in config.architecture.strides],
        },
        "previous_stage": config.previous_stage,
        "next_stage": config.next_stage,
    }


def _configuration_to_json(
    config: ConfigurationPlan, all_configs: dict[str, ConfigurationPlan]
) -> dict[str, Any]:
    full = _configuration_to_dict(config)
    parent_name = config.inherits_from
    if parent_name is None or parent_name not in all_configs:
        return full
    parent = _configuration_to_dict(all_configs[parent_name])
    differing = {k: v for k, v in full.items() if parent.get(k) != v}
    return {"inherits_from": parent_name, **differing}


def _resolve_inheritance(
    name: str, raw: dict[str, dict[str, Any]], source: str, chain: tuple[str, ...] = ()
) -> dict[str, Any]:
    if name in chain:
        cycle = " -> ".join([*chain, name])
        raise AutoSegError(f"{source}: configurations inherit in a cycle ({cycle}). Fix: break it.")
    entry = raw[name]
    parent = entry.get("inherits_from")
    if parent is None:
        return dict(entry)
    if parent not in raw:
        raise AutoSegError(
            f"{source}: configuration '{name}' inherits_from unknown '{parent}'. "
            f"Fix: name one of {', '.join(raw)}."
        )
    merged = _resolve_inheritance(parent, raw, source, (*chain, name))
    merged.update({k: v for k, v in entry.items() if k != "inherits_from"})
    return merged


def _resampling(data: dict[str, Any] | None, default_order: int) -> ResamplingSpec:
    if data is None:
        return ResamplingSpec(order=default_order)
    return ResamplingSpec(
        order=int(data.get("order", default_order)),
        order_z=int(data.get("order_z", 0)),
        force_separate_z=data.get("force_separate_z"),
    )


def _architecture_from_json(data: dict[str, Any]) -> ArchitectureSpec:
    return ArchitectureSpec(
        network=str(data["network"]),
        features_per_stage=tuple(int(f) for f in data["features_per_stage"]),
        kernel_sizes=tuple(tuple(int(k) for k in ks) for ks in data["kernel_sizes"]),
        strides=tuple(tuple(int(s) for s in st) for st in data["strides"]),
        n_blocks_per_stage=tuple(int(n) for n in data["n_blocks_per_stage"]),
        n_conv_per_stage_decoder=tuple(int(n) for n in data["n_conv_per_stage_decoder"]),
        conv_bias=bool(data.get("conv_bias", True)),
        norm=str(data.get("norm", "InstanceNorm")),
        nonlin=str(data.get("nonlin", "LeakyReLU")),
    )


def _configuration_from_dict(
    name: str, data: dict[str, Any], inherits: str | None
) -> ConfigurationPlan:
    resampling = data.get("resampling", {})
    preprocessing = PreprocessingSpec(
        spacing=tuple(float(s) for s in data["spacing"]),
        normalization_schemes=tuple(str(s) for s in data["normalization_schemes"]),
        use_mask_for_norm=tuple(bool(m) for m in data["use_mask_for_norm"]),
        resampling_data=_resampling(resampling.get("data"), 3),
        resampling_seg=_resampling(resampling.get("seg"), 1),
        resampling_probabilities=_resampling(resampling.get("probabilities"), 1),
    )
    return ConfigurationPlan(
        name=name,
        data_identifier=str(data["data_identifier"]),
        patch_size=tuple(int(p) for p in data["patch_size"]),
        batch_size=int(data["batch_size"]),
        median_image_size_in_voxels=tuple(float(m) for m in data["median_image_size_in_voxels"]),
        batch_dice=bool(data["batch_dice"]),
        preprocessing=preprocessing,
        architecture=_architecture_from_json(data["architecture"]),
        previous_stage=data.get("previous_stage"),
        next_stage=data.get("next_stage"),
        inherits_from=inherits,
    )


def _plans_from_json(data: dict[str, Any], source: str) -> Plans:
    if data.get("format") != PLANS_FORMAT:
        raise AutoSegError(
            f'{source}: not an AutoSeg plans file (missing "format": "{PLANS_FORMAT}"). '
            "Fix: create plans with 'autoseg plan_experiment'; nnU-Net's own plans files are not read."
        )
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise AutoSegError(
            f"{source}: plans schema_version {version} is not supported (this AutoSeg reads "
            f"{SCHEMA_VERSION}). Fix: re-run plan_experiment with this version of AutoSeg."
        )
    raw_configs: dict[str, dict[str, Any]] = data.get("configurations", {})
    configurations: dict[str, ConfigurationPlan] = {}
    for name, entry in raw_configs.items():
        resolved = _resolve_inheritance(name, raw_configs, source)
        try:
            configurations[name] = _configuration_from_dict(
                name, resolved, entry.get("inherits_from")
            )
        except (KeyError, TypeError, ValueError) as error:
            raise AutoSegError(
                f"{source}: configuration '{name}' is malformed ({type(error).__name__}: {error}). "
                "Fix: repair the key or re-run plan_experiment."
            ) from None
    stats = {
        key: IntensityStats(**{k: float(v) for k, v in value.items()})
        for key, value in data["foreground_intensity_properties_per_channel"].items()
    }
    return Plans(
        dataset_name=data["dataset_name"],
        plans_name=data["plans_name"],
        image_reader_writer=data["image_reader_writer"],
        transpose_forward=tuple(data["transpose_forward"]),
        transpose_backward=tuple(data["transpose_backward"]),
        original_median_spacing_after_transp=tuple(data["original_median_spacing_after_transp"]),
        original_median_shape_after_transp=tuple(data["original_median_shape_after_transp"]),
        foreground_intensity_properties_per_channel=stats,
        configurations=configurations,
        experiment_planner_used=data.get("experiment_planner_used", "default"),
        schema_version=version,
        extra={k: v for k, v in data.items() if k not in _TOP_LEVEL_KEYS},
    )
