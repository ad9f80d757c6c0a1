"""nnU-Net plans.json -> AutoSeg plans: the fixture's real plans translate exactly, and every setting
AutoSeg cannot reproduce is refused in one line naming the plans key."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from Testing.engine.interop.nnunet_reference import MODELS, PLAIN, RESENC, TWO_D, read_json

from autoseg.errors import AutoSegError
from autoseg.interop.nnunet_plans import is_nnunet_plans, plans_from_nnunet
from autoseg.plans import ResamplingSpec

SOURCE = "model/plans.json"


def _plans(model: str = PLAIN) -> dict[str, Any]:
    return read_json(MODELS / model / "plans.json")


def test_the_plain_plans_translate_setting_by_setting() -> None:
    raw = _plans()
    plans = plans_from_nnunet(raw, SOURCE, "3d_fullres")
    config = plans.configuration("3d_fullres")
    nnunet = raw["configurations"]["3d_fullres"]
    assert plans.transpose_forward == tuple(raw["transpose_forward"])
    assert plans.transpose_backward == tuple(raw["transpose_backward"])
    assert plans.image_reader_writer == "SimpleITKIO"
    assert config.patch_size == tuple(nnunet["patch_size"])
    assert config.spacing == pytest.approx(nnunet["spacing"])
    prep = config.preprocessing
    assert prep.normalization_schemes == ("CT", "ZScore")
    assert prep.use_mask_for_norm == tuple(nnunet["use_mask_for_norm"])
    assert prep.resampling_data == ResamplingSpec(order=3, order_z=0, force_separate_z=None)
    assert prep.resampling_seg == ResamplingSpec(order=1, order_z=0, force_separate_z=None)
    assert prep.resampling_probabilities == ResamplingSpec(order=1)
    arch, kwargs = config.architecture, nnunet["architecture"]["arch_kwargs"]
    assert arch.network == "PlainConvUNet"
    assert arch.features_per_stage == tuple(kwargs["features_per_stage"])
    assert arch.kernel_sizes == tuple(tuple(k) for k in kwargs["kernel_sizes"])
    assert arch.strides == tuple(tuple(s) for s in kwargs["strides"])
    assert arch.n_blocks_per_stage == tuple(kwargs["n_conv_per_stage"])
    assert arch.n_conv_per_stage_decoder == tuple(kwargs["n_conv_per_stage_decoder"])
    assert (arch.norm, arch.nonlin, arch.conv_bias) == ("InstanceNorm", "LeakyReLU", True)
    ct = raw["foreground_intensity_properties_per_channel"]["0"]
    assert plans.intensity_stats()[0].percentile_99_5 == pytest.approx(ct["percentile_99_5"])


def test_resenc_2d_and_the_cascade_translate() -> None:
    resenc = plans_from_nnunet(_plans(RESENC), SOURCE, "3d_fullres").configuration("3d_fullres")
    kwargs = _plans(RESENC)["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]
    assert resenc.architecture.network == "ResidualEncoderUNet"
    assert resenc.architecture.n_blocks_per_stage == tuple(kwargs["n_blocks_per_stage"])
    two_d = plans_from_nnunet(_plans(TWO_D), SOURCE, "2d").configuration("2d")
    assert two_d.is_2d
    assert len(two_d.architecture.kernel_sizes[0]) == 2
    plans = plans_from_nnunet(_plans(), SOURCE, "3d_cascade_fullres")
    cascade, fullres = plans.configuration("3d_cascade_fullres"), plans.configuration("3d_fullres")
    assert cascade.previous_stage == "3d_lowres"
    assert cascade.architecture == fullres.architecture  # inherited from 3d_fullres
    assert plans.configuration("3d_lowres").next_stage == "3d_cascade_fullres"


def test_autoseg_plans_are_not_taken_for_nnunet_plans() -> None:
    assert is_nnunet_plans(_plans())
    assert not is_nnunet_plans({"format": "autoseg-plans", "plans_name": "x", "configurations": {}})


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``value`` at a dotted path below the 3d_fullres configuration."""

    def change(plans: dict[str, Any]) -> None:
        node = plans["configurations"]["3d_fullres"]
        *parents, last = path.split(".")
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _top(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda plans: plans.__setitem__(key, value)


REFUSALS = {
    "unknown network class": (
        _set("architecture.network_class_name", "my_networks.SwinUNETR"),
        "architecture.network_class_name",
    ),
    "unsupported normalization": (
        _set("normalization_schemes", ["CTNormalization", "MyNormalization"]),
        "normalization_schemes",
    ),
    "torch resampling": (
        _set("resampling_fn_data", "resample_torch_fornnunet"),
        "resampling_fn_data",
    ),
    "unknown resampling option": (
        _set("resampling_fn_seg_kwargs.antialias", True),
        "resampling_fn_seg_kwargs.antialias",
    ),
    "another anisotropy threshold": (
        _set("resampling_fn_data_kwargs.separate_z_anisotropy_threshold", 2.5),
        "separate_z_anisotropy_threshold",
    ),
    "another preprocessor": (_set("preprocessor_name", "MyPreprocessor"), "preprocessor_name"),
    "bottleneck blocks": (
        _set("architecture.arch_kwargs.block", "BottleneckD"),
        "arch_kwargs.block",
    ),
    "another norm epsilon": (
        _set("architecture.arch_kwargs.norm_op_kwargs", {"eps": 1e-3, "affine": True}),
        "norm_op_kwargs",
    ),
    "unknown nonlinearity": (_set("architecture.arch_kwargs.nonlin", "torch.nn.GELU"), "nonlin"),
    "another label manager": (_top("label_manager", "MyLabelManager"), "label_manager"),
    "missing spacing": (_set("spacing", None), "malformed"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_settings_autoseg_cannot_reproduce_are_refused_by_key(case: str) -> None:
    change, key = REFUSALS[case]
    raw = copy.deepcopy(_plans())
    change(raw)
    with pytest.raises(AutoSegError) as caught:
        plans_from_nnunet(raw, SOURCE, "3d_fullres")
    message = str(caught.value)
    assert "\n" not in message
    assert SOURCE in message
    assert key in message
    assert "Fix:" in message


def test_a_configuration_autoseg_cannot_run_does_not_block_another() -> None:
    raw = copy.deepcopy(_plans())
    raw["configurations"]["3d_lowres"]["architecture"]["network_class_name"] = "my.Transformer"
    plans = plans_from_nnunet(raw, SOURCE, "3d_fullres")
    assert "3d_fullres" in plans.configurations
    assert "3d_lowres" not in plans.configurations
    with pytest.raises(AutoSegError, match="network_class_name"):
        plans_from_nnunet(raw, SOURCE, "3d_lowres")


def test_a_missing_configuration_lists_the_available_ones() -> None:
    with pytest.raises(AutoSegError, match=r"available: .*3d_fullres"):
        plans_from_nnunet(_plans(), SOURCE, "3d_midres")
