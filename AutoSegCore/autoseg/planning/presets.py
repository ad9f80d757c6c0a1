"""Planner presets: the default plain U-Net planner and the residual-encoder (ResEnc) family.

A preset is data, not a subclass: the reference activation counts that correspond to a GPU memory
budget, the batch-size cap, and the network family. Names of nnU-Net's planner classes are accepted
so commands from an nnU-Net user's notes keep working.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from autoseg.errors import AutoSegError

DEFAULT_PLANS_NAME = "AutoSegPlans"


@dataclass(frozen=True)
class PlannerPreset:
    """Constants that size patches and batches for one planner flavour."""

    name: str
    plans_name: str
    network: str
    reference_activations_3d: float
    reference_activations_2d: float
    reference_memory_gb: float
    gpu_memory_target_gb: float
    max_dataset_covered: float
    encoder_blocks: tuple[int, ...]
    decoder_convs: int
    # The plain planner shrinks patches while estimate/ref_batch*2 > reference; ResEnc while
    # estimate > reference. The two differ only for 2d (reference batch 12).
    shrink_against_reference_batch: bool

    def with_memory_target(self, gigabytes: float | None) -> PlannerPreset:
        return self if gigabytes is None else replace(self, gpu_memory_target_gb=float(gigabytes))

    def blocks_for(self, n_stages: int) -> tuple[int, ...]:
        blocks = self.encoder_blocks + (self.encoder_blocks[-1],) * n_stages
        return blocks[:n_stages]


_RESENC_BLOCKS = (1, 3, 4, 6, 6, 6)

PRESETS: dict[str, PlannerPreset] = {
    "default": PlannerPreset(
        "default", DEFAULT_PLANS_NAME, "PlainConvUNet", 560e6, 85e6, 8, 8, 0.05, (2,), 2, True
    ),
    "ResEnc": PlannerPreset(
        "ResEnc",
        "AutoSegResEncUNetPlans",
        "ResidualEncoderUNet",
        680e6,
        135e6,
        8,
        8,
        0.05,
        _RESENC_BLOCKS,
        1,
        False,
    ),
    "ResEncM": PlannerPreset(
        "ResEncM",
        "AutoSegResEncUNetMPlans",
        "ResidualEncoderUNet",
        680e6,
        135e6,
        8,
        8,
        1.0,
        _RESENC_BLOCKS,
        1,
        False,
    ),
    "ResEncL": PlannerPreset(
        "ResEncL",
        "AutoSegResEncUNetLPlans",
        "ResidualEncoderUNet",
        2.1e9,
        380e6,
        24,
        24,
        1.0,
        _RESENC_BLOCKS,
        1,
        False,
    ),
    "ResEncXL": PlannerPreset(
        "ResEncXL",
        "AutoSegResEncUNetXLPlans",
        "ResidualEncoderUNet",
        3.6e9,
        560e6,
        40,
        40,
        1.0,
        _RESENC_BLOCKS,
        1,
        False,
    ),
}

_NNUNET_NAMES = {
    "experimentplanner": "default",
    "resencunetplanner": "ResEnc",
    "nnunetplannerresencm": "ResEncM",
    "nnunetplannerresencl": "ResEncL",
    "nnunetplannerresencxl": "ResEncXL",
}


def get_preset(name: str) -> PlannerPreset:
    """Look a preset up by our name (``ResEncL``) or nnU-Net's class name (``nnUNetPlannerResEncL``)."""
    key = name.strip()
    by_lower = {k.lower(): k for k in PRESETS}
    resolved = by_lower.get(key.lower()) or _NNUNET_NAMES.get(key.lower())
    if resolved is None:
        known = ", ".join(PRESETS)
        raise AutoSegError(f"unknown planner '{name}'. Fix: use one of {known}.")
    return PRESETS[resolved]
