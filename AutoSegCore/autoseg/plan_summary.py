"""A readable summary of a plans file, for the terminal and the logs."""

from __future__ import annotations

from autoseg.plans import ConfigurationPlan, Plans


def _numbers(values: tuple[float, ...] | tuple[int, ...], digits: int = 3) -> str:
    return " x ".join(f"{v:.{digits}g}" if isinstance(v, float) else str(v) for v in values)


def _configuration_lines(config: ConfigurationPlan) -> list[str]:
    arch = config.architecture
    prep = config.preprocessing
    features = "/".join(map(str, arch.features_per_stage))
    strides = " ".join("".join(map(str, s)) for s in arch.strides)
    lines = [
        f"  {config.name}",
        f"    patch {_numbers(config.patch_size)}, batch {config.batch_size}, "
        f"spacing {_numbers(config.spacing)} mm, median image {_numbers(config.median_image_size_in_voxels)}",
        f"    {arch.network}: {arch.n_stages} stages, features {features}, strides {strides}",
        f"    normalization {', '.join(prep.normalization_schemes)} "
        f"(mask: {', '.join(str(m).lower() for m in prep.use_mask_for_norm)}), "
        f"batch dice {str(config.batch_dice).lower()}, data '{config.data_identifier}'",
    ]
    links = [
        f"{k} {v}" for k, v in (("after", config.previous_stage), ("then", config.next_stage)) if v
    ]
    if links:
        lines.append(f"    cascade: {', '.join(links)}")
    return lines


def format_plans(plans: Plans) -> str:
    """Several lines describing every configuration: what a user checks after planning."""
    lines = [
        f"Plans '{plans.plans_name}' for {plans.dataset_name} (planner {plans.experiment_planner_used})",
        f"  axis order {list(plans.transpose_forward)}, median spacing "
        f"{_numbers(plans.original_median_spacing_after_transp)} mm, median shape "
        f"{_numbers(plans.original_median_shape_after_transp)}",
    ]
    for config in plans.configurations.values():
        lines.extend(_configuration_lines(config))
    return "\n".join(lines)
