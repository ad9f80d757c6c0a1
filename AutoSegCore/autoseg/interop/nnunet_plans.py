"""nnU-Net v2's ``plans.json`` translated into AutoSeg's plans, or refused by the key it cannot honour.

nnU-Net's plans name Python things (normalization classes, resampling functions, torch layer
classes, a network class path) where AutoSeg's plans store the settings themselves. Each name
AutoSeg reproduces exactly is translated; anything else (another preprocessor, a torch-based
resampler, a network class or block type AutoSeg does not build, a norm with other constants) is
an error naming the plans key, because running it with a silently different setting would give
silently different segmentations.

Only the configuration being run must translate: a plans file may hold other configurations that
AutoSeg cannot run (a custom network for another configuration), and those are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autoseg.errors import AutoSegError
from autoseg.plans import (
    ArchitectureSpec,
    ConfigurationPlan,
    IntensityStats,
    Plans,
    PreprocessingSpec,
    ResamplingSpec,
    _resolve_inheritance,
)

NNUNET_ORIGIN = "nnunet"
# nnU-Net's default trainer and plans names (its results folders are named after them).
NNUNET_TRAINER = "nnUNetTrainer"
NNUNET_PLANS = "nnUNetPlans"

# nnU-Net's normalization class -> AutoSeg's scheme (the same formulas, see preprocessing/normalization).
NORMALIZATION = {
    "CTNormalization": "CT",
    "ZScoreNormalization": "ZScore",
    "NoNormalization": "NoNorm",
    "RescaleTo01Normalization": "RescaleTo01",
    "RGBTo01Normalization": "RGBTo01",
}
RESAMPLING_FUNCTION = "resample_data_or_seg_to_shape"
_RESAMPLING_KWARGS = {"is_seg", "order", "order_z", "force_separate_z"}
ANISOTROPY_THRESHOLD = 3  # autoseg.geometry's; nnU-Net's kwarg may only repeat it
PREPROCESSOR = "DefaultPreprocessor"
LABEL_MANAGER = "LabelManager"
# The classes nnU-Net's plans name for what AutoSeg's plans name by a word: reading a plans file
# matches the class name (any module path), writing one (nnunet_plans_writer) writes these paths.
_UNET_MODULE = "dynamic_network_architectures.architectures.unet"
NETWORK_CLASSES = {
    name: f"{_UNET_MODULE}.{name}" for name in ("PlainConvUNet", "ResidualEncoderUNet")
}
NETWORKS = tuple(NETWORK_CLASSES)
CONV_CLASS = "torch.nn.modules.conv.Conv"  # + "2d" / "3d"
# AutoSeg's norm -> torch's class (+ "2d" / "3d"); both are affine with eps NORM_EPS.
NORM_CLASSES = {
    "InstanceNorm": "torch.nn.modules.instancenorm.InstanceNorm",
    "BatchNorm": "torch.nn.modules.batchnorm.BatchNorm",
}
# AutoSeg's nonlinearity -> (torch's class, its negative slope; None: it has none).
NONLIN_CLASSES = {"LeakyReLU": ("torch.nn.LeakyReLU", 0.01), "ReLU": ("torch.nn.ReLU", None)}
NORM_EPS = 1e-5
# arch_kwargs AutoSeg reads; anything else must keep its default (see _check_defaults).
_ARCH_KEYS = {
    "n_stages",
    "features_per_stage",
    "conv_op",
    "kernel_sizes",
    "strides",
    "n_conv_per_stage",
    "n_blocks_per_stage",
    "n_conv_per_stage_decoder",
    "conv_bias",
    "norm_op",
    "norm_op_kwargs",
    "dropout_op",  # dropout is the identity at inference
    "dropout_op_kwargs",
    "nonlin",
    "nonlin_kwargs",
}
# Further arguments of the two networks, accepted only with the value that builds the standard one.
_ARCH_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "pool": ("conv",),
    "block": ("BasicBlockD", "dynamic_network_architectures.building_blocks.residual.BasicBlockD"),
    "bottleneck_channels": (None,),
    "stem_channels": (None,),
    "squeeze_excitation": (False,),
    "squeeze_excitation_reduction_ratio": (None, 0.0625),
    "nonlin_first": (False,),
    "return_skips": (False,),
    "disable_default_stem": (False,),
    "deep_supervision": (False, True),
}


def is_nnunet_plans(data: Mapping[str, Any]) -> bool:
    """nnU-Net's plans have configurations and a plans name but no AutoSeg format marker."""
    return "format" not in data and "configurations" in data and "plans_name" in data


def _error(source: str, key: str, found: Any, fix: str) -> AutoSegError:
    return AutoSegError(
        f"{source}: nnU-Net plans key '{key}' = {found!r} is not something AutoSeg can reproduce. "
        f"Fix: {fix}"
    )


def _class_name(dotted: Any) -> str:
    return str(dotted).rsplit(".", 1)[-1]


def _per_stage(value: Any, n: int) -> list[Any]:
    """nnU-Net allows one value for every stage where a list is usual."""
    return list(value) if isinstance(value, list | tuple) else [value] * n


def _resampling(config: Mapping[str, Any], kind: str, where: str) -> ResamplingSpec:
    function = config.get(f"resampling_fn_{kind}", RESAMPLING_FUNCTION)
    if function != RESAMPLING_FUNCTION:
        raise _error(
            where,
            f"resampling_fn_{kind}",
            function,
            f"AutoSeg resamples like nnU-Net's {RESAMPLING_FUNCTION} only; use a model planned "
            "with nnU-Net's default resampling.",
        )
    kwargs = dict(config.get(f"resampling_fn_{kind}_kwargs") or {})
    threshold = kwargs.pop("separate_z_anisotropy_threshold", ANISOTROPY_THRESHOLD)
    unknown = sorted(set(kwargs) - _RESAMPLING_KWARGS)
    if unknown or threshold != ANISOTROPY_THRESHOLD:
        shown = unknown[0] if unknown else "separate_z_anisotropy_threshold"
        raise _error(
            where,
            f"resampling_fn_{kind}_kwargs.{shown}",
            kwargs.get(shown, threshold),
            f"only order, order_z, force_separate_z and an anisotropy threshold of "
            f"{ANISOTROPY_THRESHOLD} are supported.",
        )
    default_order = 1 if kind != "data" else 3
    return ResamplingSpec(
        order=int(kwargs.get("order", default_order)),
        order_z=int(kwargs.get("order_z", 0)),
        force_separate_z=kwargs.get("force_separate_z"),
    )


def _preprocessing(config: Mapping[str, Any], where: str) -> PreprocessingSpec:
    preprocessor = config.get("preprocessor_name", PREPROCESSOR)
    if preprocessor != PREPROCESSOR:
        raise _error(
            where, "preprocessor_name", preprocessor, f"only nnU-Net's {PREPROCESSOR} is supported."
        )
    schemes = []
    for name in config["normalization_schemes"]:
        if name not in NORMALIZATION:
            raise _error(
                where,
                "normalization_schemes",
                name,
                f"AutoSeg has the normalizations {', '.join(NORMALIZATION)}.",
            )
        schemes.append(NORMALIZATION[name])
    return PreprocessingSpec(
        spacing=tuple(float(s) for s in config["spacing"]),
        normalization_schemes=tuple(schemes),
        use_mask_for_norm=tuple(bool(m) for m in config["use_mask_for_norm"]),
        resampling_data=_resampling(config, "data", where),
        resampling_seg=_resampling(config, "seg", where),
        resampling_probabilities=_resampling(config, "probabilities", where),
    )


def _check_defaults(kwargs: Mapping[str, Any], where: str) -> None:
    for key, value in kwargs.items():
        if key in _ARCH_KEYS:
            continue
        if key not in _ARCH_DEFAULTS or value not in _ARCH_DEFAULTS[key]:
            raise _error(
                where,
                f"architecture.arch_kwargs.{key}",
                value,
                "AutoSeg builds nnU-Net's standard PlainConvUNet and ResidualEncoderUNet only.",
            )


def _norm(kwargs: Mapping[str, Any], where: str) -> str:
    name = _class_name(kwargs.get("norm_op"))
    family = next((n for n in NORM_CLASSES if name.startswith(n)), None)
    norm_kwargs = dict(kwargs.get("norm_op_kwargs") or {})
    eps, affine = norm_kwargs.pop("eps", NORM_EPS), norm_kwargs.pop("affine", False)
    if family is None:
        raise _error(
            where,
            "architecture.arch_kwargs.norm_op",
            kwargs.get("norm_op"),
            "AutoSeg builds instance and batch norm only.",
        )
    if eps != NORM_EPS or affine is not True or norm_kwargs:
        raise _error(
            where,
            "architecture.arch_kwargs.norm_op_kwargs",
            kwargs.get("norm_op_kwargs"),
            f"AutoSeg's norms are affine with eps {NORM_EPS} (nnU-Net's default).",
        )
    return family


def _nonlin(kwargs: Mapping[str, Any], where: str) -> str:
    name = _class_name(kwargs.get("nonlin"))
    options = dict(kwargs.get("nonlin_kwargs") or {})
    options.pop("inplace", None)
    known = NONLIN_CLASSES.get(name)
    slope = options.pop("negative_slope", known[1] if known else None)
    if known is None or options or slope != known[1]:
        raise _error(
            where,
            "architecture.arch_kwargs.nonlin",
            f"{kwargs.get('nonlin')} {kwargs.get('nonlin_kwargs')}",
            "AutoSeg builds LeakyReLU (slope 0.01) and ReLU networks only.",
        )
    return name


def _architecture(config: Mapping[str, Any], where: str) -> ArchitectureSpec:
    architecture = config["architecture"]
    network = _class_name(architecture.get("network_class_name"))
    if network not in NETWORKS:
        raise _error(
            where,
            "architecture.network_class_name",
            architecture.get("network_class_name"),
            f"AutoSeg runs nnU-Net models built with {' or '.join(NETWORKS)}.",
        )
    kwargs = architecture["arch_kwargs"]
    _check_defaults(kwargs, where)
    n = int(kwargs["n_stages"])
    conv = _class_name(kwargs.get("conv_op"))
    if conv not in ("Conv2d", "Conv3d"):
        raise _error(
            where,
            "architecture.arch_kwargs.conv_op",
            kwargs.get("conv_op"),
            "AutoSeg builds networks of Conv2d or Conv3d layers.",
        )
    dim = int(conv[-2])
    blocks_key = "n_blocks_per_stage" if network == "ResidualEncoderUNet" else "n_conv_per_stage"
    kernels = [
        [int(k) for k in _per_stage(ks, dim)] for ks in _per_stage(kwargs["kernel_sizes"], n)
    ]
    return ArchitectureSpec(
        network=network,
        features_per_stage=tuple(int(f) for f in _per_stage(kwargs["features_per_stage"], n)),
        kernel_sizes=tuple(tuple(k) for k in kernels),
        strides=tuple(
            tuple(int(s) for s in _per_stage(st, dim)) for st in _per_stage(kwargs["strides"], n)
        ),
        n_blocks_per_stage=tuple(int(b) for b in _per_stage(kwargs[blocks_key], n)),
        n_conv_per_stage_decoder=tuple(
            int(c) for c in _per_stage(kwargs["n_conv_per_stage_decoder"], n - 1)
        ),
        conv_bias=bool(kwargs.get("conv_bias", False)),
        norm=_norm(kwargs, where),
        nonlin=_nonlin(kwargs, where),
    )


def _stage_name(value: Any) -> str | None:
    """nnU-Net may list several next stages; AutoSeg's plans keep one (the first)."""
    if isinstance(value, list | tuple):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def _configuration(name: str, config: Mapping[str, Any], source: str) -> ConfigurationPlan:
    where = f"{source} (configuration '{name}')"
    try:
        return ConfigurationPlan(
            name=name,
            data_identifier=str(config.get("data_identifier", name)),
            patch_size=tuple(int(p) for p in config["patch_size"]),
            batch_size=int(config.get("batch_size", 1)),
            median_image_size_in_voxels=tuple(
                float(m) for m in config.get("median_image_size_in_voxels", config["patch_size"])
            ),
            batch_dice=bool(config.get("batch_dice", False)),
            preprocessing=_preprocessing(config, where),
            architecture=_architecture(config, where),
            previous_stage=_stage_name(config.get("previous_stage")),
            next_stage=_stage_name(config.get("next_stage")),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise AutoSegError(
            f"{where}: nnU-Net plans entry is malformed ({type(error).__name__}: {error}). "
            "Fix: use the plans.json nnU-Net wrote for this model."
        ) from None


def _configurations(
    raw: Mapping[str, Any], source: str, required: str
) -> dict[str, ConfigurationPlan]:
    """Every configuration that translates; ``required`` must, or its error is raised."""
    if required not in raw:
        raise AutoSegError(
            f"{source}: has no configuration '{required}' (available: {', '.join(raw) or 'none'})."
            " Fix: restore the plans.json that was written together with this model."
        )
    configurations = {}
    for name in raw:
        try:
            resolved = _resolve_inheritance(name, dict(raw), source)
            configurations[name] = _configuration(name, resolved, source)
        except AutoSegError:
            if name == required:
                raise
    return configurations


def _intensity_stats(data: Mapping[str, Any]) -> dict[str, IntensityStats]:
    fields = IntensityStats.__dataclass_fields__
    return {
        str(channel): IntensityStats(**{k: float(v) for k, v in values.items() if k in fields})
        for channel, values in data.get("foreground_intensity_properties_per_channel", {}).items()
    }


def plans_from_nnunet(data: Mapping[str, Any], source: str, required: str) -> Plans:
    """AutoSeg's plans for an nnU-Net ``plans.json`` (``required``: the configuration to run)."""
    manager = data.get("label_manager", LABEL_MANAGER)
    if manager != LABEL_MANAGER:
        raise _error(source, "label_manager", manager, f"only {LABEL_MANAGER} is supported.")
    try:
        return Plans(
            dataset_name=str(data["dataset_name"]),
            plans_name=str(data["plans_name"]),
            image_reader_writer=str(data.get("image_reader_writer", "SimpleITKIO")),
            transpose_forward=tuple(int(a) for a in data["transpose_forward"]),
            transpose_backward=tuple(int(a) for a in data["transpose_backward"]),
            original_median_spacing_after_transp=tuple(
                data.get("original_median_spacing_after_transp", ())
            ),
            original_median_shape_after_transp=tuple(
                data.get("original_median_shape_after_transp", ())
            ),
            foreground_intensity_properties_per_channel=_intensity_stats(data),
            configurations=_configurations(data["configurations"], source, required),
            experiment_planner_used=str(data.get("experiment_planner_used", "nnU-Net")),
            extra={"origin": NNUNET_ORIGIN},
        )
    except (KeyError, TypeError, ValueError) as error:
        raise AutoSegError(
            f"{source}: nnU-Net plans entry is malformed ({type(error).__name__}: {error}). "
            "Fix: use the plans.json nnU-Net wrote for this model."
        ) from None
