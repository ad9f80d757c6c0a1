"""AutoSeg's plans written as nnU-Net v2's ``plans.json``: the reverse of :mod:`nnunet_plans`.

nnU-Net's plans name Python things (a network class, torch layer classes, normalization classes,
a resampling function with its keyword arguments) where AutoSeg's plans store the settings. Every
name written here comes from the tables :mod:`autoseg.interop.nnunet_plans` reads with, so a plans
file written here reads back into the same AutoSeg plans, and nnunetv2 builds the same network and
preprocesses the same way from it. A setting nnU-Net cannot express is refused by name: exporting
it anyway would make nnU-Net run another model than the one that was trained.

Configurations are written resolved (no ``inherits_from``), each with every key nnunetv2 reads.
No torch here.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from autoseg.errors import AutoSegError
from autoseg.interop.nnunet_plans import (
    CONV_CLASS,
    LABEL_MANAGER,
    NETWORK_CLASSES,
    NNUNET_ORIGIN,
    NONLIN_CLASSES,
    NORM_CLASSES,
    NORM_EPS,
    NORMALIZATION,
    PREPROCESSOR,
    RESAMPLING_FUNCTION,
)
from autoseg.plans import ArchitectureSpec, ConfigurationPlan, Plans, ResamplingSpec

_SCHEME_CLASSES = {scheme: name for name, scheme in NORMALIZATION.items()}
# The arch_kwargs whose values nnU-Net imports by their dotted names.
_IMPORTED_KWARGS = ["conv_op", "norm_op", "dropout_op", "nonlin"]
# AutoSeg's plans keys that have no place in nnU-Net's plans and change nothing it runs.
_DROPPED_EXTRA = ("origin",)


def _refusal(source: str, key: str, value: Any, supported: str) -> AutoSegError:
    return AutoSegError(
        f"{source}: {key} = {value!r} cannot be written as nnU-Net plans ({supported}). "
        "Fix: export this model in AutoSeg's format (--format autoseg)."
    )


def _layer_class(table: dict[str, str], name: str, dim: int, source: str, key: str) -> str:
    if name not in table:
        raise _refusal(source, key, name, f"nnU-Net's networks use {', '.join(table)}")
    return f"{table[name]}{dim}d"


def _nonlin(name: str, source: str) -> str:
    """The nonlinearity's class; its keyword arguments are nnU-Net's usual ``{"inplace": True}``,
    because the slope AutoSeg's LeakyReLU uses (0.01) is torch's default."""
    if name not in NONLIN_CLASSES:
        raise _refusal(
            source, "architecture.nonlin", name, f"supported: {', '.join(NONLIN_CLASSES)}"
        )
    return NONLIN_CLASSES[name][0]


def _architecture(spec: ArchitectureSpec, source: str) -> dict[str, Any]:
    if spec.network not in NETWORK_CLASSES:
        supported = f"nnU-Net builds {', '.join(NETWORK_CLASSES)}"
        raise _refusal(source, "architecture.network", spec.network, supported)
    dim = len(spec.kernel_sizes[0])
    blocks_key = (
        "n_blocks_per_stage" if spec.network == "ResidualEncoderUNet" else "n_conv_per_stage"
    )
    kwargs = {
        "n_stages": spec.n_stages,
        "features_per_stage": list(spec.features_per_stage),
        "conv_op": f"{CONV_CLASS}{dim}d",
        "kernel_sizes": [list(k) for k in spec.kernel_sizes],
        "strides": [list(s) for s in spec.strides],
        blocks_key: list(spec.n_blocks_per_stage),
        "n_conv_per_stage_decoder": list(spec.n_conv_per_stage_decoder),
        "conv_bias": spec.conv_bias,
        "norm_op": _layer_class(NORM_CLASSES, spec.norm, dim, source, "architecture.norm"),
        "norm_op_kwargs": {"eps": NORM_EPS, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": _nonlin(spec.nonlin, source),
        "nonlin_kwargs": {"inplace": True},
    }
    return {
        "network_class_name": NETWORK_CLASSES[spec.network],
        "arch_kwargs": kwargs,
        "_kw_requires_import": list(_IMPORTED_KWARGS),
    }


def _resampling_kwargs(spec: ResamplingSpec, *, is_seg: bool) -> dict[str, Any]:
    return {"is_seg": is_seg, **asdict(spec)}


def _schemes(config: ConfigurationPlan, source: str) -> list[str]:
    names = []
    for scheme in config.preprocessing.normalization_schemes:
        if scheme not in _SCHEME_CLASSES:
            supported = f"nnU-Net has {', '.join(_SCHEME_CLASSES)}"
            raise _refusal(source, "normalization_schemes", scheme, supported)
        names.append(_SCHEME_CLASSES[scheme])
    return names


def _configuration(config: ConfigurationPlan, source: str) -> dict[str, Any]:
    where = f"{source} (configuration '{config.name}')"
    prep = config.preprocessing
    entry: dict[str, Any] = {
        "data_identifier": config.data_identifier,
        "preprocessor_name": PREPROCESSOR,
        "batch_size": config.batch_size,
        "patch_size": list(config.patch_size),
        "median_image_size_in_voxels": list(config.median_image_size_in_voxels),
        "spacing": list(prep.spacing),
        "normalization_schemes": _schemes(config, where),
        "use_mask_for_norm": list(prep.use_mask_for_norm),
    }
    for kind, spec, is_seg in (
        ("data", prep.resampling_data, False),
        ("seg", prep.resampling_seg, True),
        ("probabilities", prep.resampling_probabilities, False),
    ):
        entry[f"resampling_fn_{kind}"] = RESAMPLING_FUNCTION
        entry[f"resampling_fn_{kind}_kwargs"] = _resampling_kwargs(spec, is_seg=is_seg)
    entry["architecture"] = _architecture(config.architecture, where)
    entry["batch_dice"] = config.batch_dice
    for key in ("previous_stage", "next_stage"):
        if getattr(config, key) is not None:
            entry[key] = getattr(config, key)
    return entry


def nnunet_plans_json(plans: Plans, source: str) -> dict[str, Any]:
    """nnU-Net v2's ``plans.json`` content for AutoSeg's ``plans`` (``source`` names the file in
    errors); raises AutoSegError naming the first setting nnU-Net cannot express."""
    if plans.extra.get("origin") == NNUNET_ORIGIN:
        raise AutoSegError(
            f"{source}: these plans were read from nnU-Net's plans.json; export that file itself."
        )
    extra = {k: v for k, v in plans.extra.items() if k not in _DROPPED_EXTRA}
    return {
        "dataset_name": plans.dataset_name,
        "plans_name": plans.plans_name,
        "original_median_spacing_after_transp": list(plans.original_median_spacing_after_transp),
        "original_median_shape_after_transp": list(plans.original_median_shape_after_transp),
        "image_reader_writer": plans.image_reader_writer,
        "transpose_forward": list(plans.transpose_forward),
        "transpose_backward": list(plans.transpose_backward),
        "configurations": {
            name: _configuration(config, source) for name, config in plans.configurations.items()
        },
        "experiment_planner_used": plans.experiment_planner_used,
        "label_manager": LABEL_MANAGER,
        "foreground_intensity_properties_per_channel": {
            channel: asdict(stats)
            for channel, stats in plans.foreground_intensity_properties_per_channel.items()
        },
        **extra,
    }
