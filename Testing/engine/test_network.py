"""The U-Nets built from plans: shapes, deep supervision, parameter counts, names and init."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from autoseg.errors import AutoSegError
from autoseg.network import (
    NETWORKS,
    ResidualBlock,
    build_network,
    count_parameters,
    describe_network,
    expected_parameter_count,
    feature_map_sizes,
)
from autoseg.plans import ArchitectureSpec

NAMES = ("PlainConvUNet", "ResidualEncoderUNet")


def small_spec(network: str = "PlainConvUNet", dim: int = 3, **changes) -> ArchitectureSpec:
    """Three stages, few features: builds and runs in milliseconds."""
    first = (1,) + (3,) * (dim - 1)  # an anisotropic stage-0 kernel exercises per-axis padding
    spec = ArchitectureSpec(
        network=network,
        features_per_stage=(4, 8, 12),
        kernel_sizes=(first, (3,) * dim, (3,) * dim),
        strides=((1,) * dim, (1,) + (2,) * (dim - 1), (2,) * dim),
        n_blocks_per_stage=(1, 2, 2),
        n_conv_per_stage_decoder=(1, 2),
    )
    return dataclasses.replace(spec, **changes)


def hippocampus_spec(network: str = "PlainConvUNet") -> ArchitectureSpec:
    return ArchitectureSpec(
        network=network,
        features_per_stage=(32, 64, 128, 256),
        kernel_sizes=((3, 3, 3),) * 4,
        strides=((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2)),
        n_blocks_per_stage=(2, 2, 2, 2),
        n_conv_per_stage_decoder=(2, 2, 2),
    )


@pytest.mark.parametrize("network", NAMES)
@pytest.mark.parametrize(("dim", "patch"), [(2, (8, 12)), (3, (4, 8, 12))])
def test_output_shapes_with_and_without_deep_supervision(network, dim, patch):
    torch.manual_seed(0)
    net = build_network(small_spec(network, dim), 2, 3)
    x = torch.randn(2, 2, *patch)
    outputs = net(x)
    # Highest resolution first; stage 1 halves all but the first axis, stage 2 halves every axis.
    assert isinstance(outputs, list)
    assert [tuple(o.shape) for o in outputs] == [
        (2, 3, *patch),
        (2, 3, patch[0], *(p // 2 for p in patch[1:])),
    ]
    net.deep_supervision = False
    single = net(x)
    assert isinstance(single, torch.Tensor)
    torch.testing.assert_close(single, outputs[0])


@pytest.mark.parametrize("network", NAMES)
def test_2d_and_3d_layers_follow_the_kernel_length(network):
    for dim, conv in ((2, nn.Conv2d), (3, nn.Conv3d)):
        net = build_network(small_spec(network, dim), 1, 2)
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)]
        assert convs
        assert all(type(m) is conv for m in convs)


def test_plain_encoder_downsamples_with_the_first_conv_only():
    net = build_network(small_spec(), 1, 2)
    stage = net.encoder.stages[2]
    assert [block.conv.stride for block in stage] == [(2, 2, 2), (1, 1, 1)]
    assert stage[0].conv.padding == (1, 1, 1)
    assert net.encoder.stages[0][0].conv.padding == (0, 1, 1)
    assert not any(isinstance(m, nn.AvgPool3d | nn.MaxPool3d) for m in net.modules())


def test_residual_skip_pools_before_projecting():
    net = build_network(small_spec("ResidualEncoderUNet"), 1, 2)
    first, second = net.encoder.stages[2][0], net.encoder.stages[2][1]
    assert first.conv1.conv.stride == (2, 2, 2)
    assert [type(m) for m in first.skip] == [nn.AvgPool3d, nn.Conv3d, nn.GroupNorm]
    assert first.skip[1].bias is None
    assert isinstance(second.skip, nn.Identity)
    assert net.encoder.stem.conv.out_channels == 4


@pytest.mark.parametrize("network", NAMES)
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("changes", [{}, {"conv_bias": False, "norm": "BatchNorm"}])
def test_parameter_count_analytic_equals_built(network, dim, changes):
    spec = small_spec(network, dim, **changes)
    net = build_network(spec, 3, 5)
    assert count_parameters(net) == expected_parameter_count(spec, 3, 5)


@pytest.mark.parametrize("network", NAMES)
def test_parameter_count_of_the_hippocampus_plan(network):
    spec = hippocampus_spec(network)
    if network == "ResidualEncoderUNet":
        spec = dataclasses.replace(spec, n_blocks_per_stage=(1, 3, 4, 6))
    built = count_parameters(build_network(spec, 1, 3))
    assert built == expected_parameter_count(spec, 1, 3)
    if network == "PlainConvUNet":
        assert built == 5_603_177  # pinned: a change of topology must be deliberate


def test_segmentation_heads_are_named_seg_layers():
    spec = small_spec()
    net = build_network(spec, 1, 3, deep_supervision=False)
    heads = {k: v for k, v in net.state_dict().items() if "seg_layers" in k}
    assert sorted(heads) == [
        f"decoder.seg_layers.{i}.{p}" for i in (0, 1) for p in ("bias", "weight")
    ]
    assert heads["decoder.seg_layers.1.weight"].shape == (3, 4, 1, 1, 1)  # highest resolution
    head_params = sum(v.numel() for v in heads.values())
    body = build_network(spec, 1, 7)  # only the heads depend on the number of outputs
    assert count_parameters(body) - count_parameters(net) == head_params // 3 * 4


@pytest.mark.parametrize("network", NAMES)
def test_toggling_deep_supervision_keeps_the_state_dict(network):
    spec = small_spec(network)
    on = build_network(spec, 1, 2, deep_supervision=True)
    off = build_network(spec, 1, 2, deep_supervision=False)
    keys = list(on.state_dict())
    assert list(off.state_dict()) == keys
    off.load_state_dict(on.state_dict())
    on.deep_supervision = False
    assert list(on.state_dict()) == keys
    x = torch.randn(1, 1, 4, 8, 8)
    torch.testing.assert_close(off(x), on(x))


@pytest.mark.parametrize("network", NAMES)
def test_he_init_zero_biases_and_weight_scale(network):
    torch.manual_seed(0)
    net = build_network(hippocampus_spec(network), 1, 3)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv3d | nn.ConvTranspose3d)]
    assert all(m.bias is None or not m.bias.any() for m in convs)
    block = net.encoder.stages[3][1]
    big = block.conv if network == "PlainConvUNet" else block.conv1.conv  # 256x256x27 weights
    fan_in = big.weight[0].numel()
    expected = math.sqrt(2.0 / (1 + 1e-2**2) / fan_in)
    assert big.weight.std().item() == pytest.approx(expected, rel=0.02)


def test_residual_blocks_start_with_zero_last_norm():
    net = build_network(small_spec("ResidualEncoderUNet"), 1, 2)
    blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 5
    for block in blocks:
        assert not block.conv2.norm.weight.any()
        assert not block.conv2.norm.bias.any()
        assert (block.conv1.norm.weight == 1).all()
    # So an unstrided block without projection is exactly the activation of its input.
    x = torch.randn(2, 8, 4, 4, 4)
    torch.testing.assert_close(blocks[2](x), nn.functional.leaky_relu(x, 0.01))


def test_norm_and_nonlin_registries():
    net = build_network(small_spec(norm="BatchNorm", nonlin="ReLU"), 1, 2)
    kinds = {type(m) for m in net.modules()}
    assert {nn.BatchNorm3d, nn.ReLU} <= kinds
    assert not kinds & {nn.GroupNorm, nn.LeakyReLU}
    leaky = [m for m in build_network(small_spec(), 1, 2).modules() if isinstance(m, nn.LeakyReLU)]
    assert leaky
    assert all(m.negative_slope == 0.01 and m.inplace for m in leaky)


@pytest.mark.parametrize("dim", [2, 3])
def test_instance_norm_is_per_sample_per_channel(dim):
    """The registry computes it as GroupNorm(C, C); this pins that it is exactly instance norm."""
    torch.manual_seed(0)
    net = build_network(small_spec(dim=dim), 1, 2)
    norm = net.encoder.stages[1][0].norm
    assert [name for name, _ in norm.named_parameters()] == ["weight", "bias"]
    assert norm.eps == 1e-5
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(3, 8, *(5,) * dim) * 4 + 2
    expected = nn.functional.instance_norm(x, weight=norm.weight, bias=norm.bias, eps=1e-5)
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("network", "TransUNet", "PlainConvUNet, ResidualEncoderUNet"),
        ("norm", "GroupNorm", "InstanceNorm, BatchNorm"),
        ("nonlin", "GELU", "LeakyReLU, ReLU"),
    ],
)
def test_unknown_names_are_rejected(field, value, allowed):
    spec = small_spec(**{field: value})
    for call in (
        lambda: build_network(spec, 1, 2),
        lambda: expected_parameter_count(spec, 1, 2),
    ):
        with pytest.raises(AutoSegError, match=f"'{value}'.*allowed: {allowed}"):
            call()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"n_conv_per_stage_decoder": (1,)}, "n_conv_per_stage_decoder needs 2"),
        ({"strides": ((1, 1, 1), (2, 2, 2))}, "need 3"),
        ({"kernel_sizes": ((3, 3, 3), (2, 2, 2), (3, 3, 3))}, "must be odd"),
        ({"n_blocks_per_stage": (1, 0, 1)}, "must be >= 1"),
        ({"features_per_stage": (4,), "kernel_sizes": ((3, 3, 3),)}, "at least 2 stages"),
    ],
)
def test_inconsistent_specs_are_rejected(changes, message):
    with pytest.raises(AutoSegError, match=message):
        build_network(small_spec(**changes), 1, 2)


def test_registry_names_match_the_plans():
    assert set(NETWORKS) == set(NAMES)


def test_describe_network_summarises_stages_and_outputs():
    spec = hippocampus_spec()
    text = describe_network(spec, 1, 3, (40, 56, 40))
    assert text.startswith("network: PlainConvUNet (3D")
    assert "    3      256   3x3x3   2x2x2" in text
    assert "5x7x5" in text
    assert "parameters: 5,603,177" in text
    assert text.endswith("3x40x56x40, 3x20x28x20, 3x10x14x10")
    residual = describe_network(small_spec("ResidualEncoderUNet"), 1, 2, (4, 8, 8))
    assert "stem: 1 conv block" in residual
    assert "residual blocks" in residual


def test_feature_map_sizes_need_a_divisible_patch():
    assert feature_map_sizes(hippocampus_spec(), (40, 56, 40))[-1] == (5, 7, 5)
    with pytest.raises(AutoSegError, match=r"41x56x40.*multiple of the total stride 8x8x8"):
        describe_network(hippocampus_spec(), 1, 3, (41, 56, 40))


def test_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    net = build_network(small_spec("ResidualEncoderUNet", 2), 1, 2)
    nn.init.ones_(net.encoder.stages[1][0].conv2.norm.weight)  # open one zero-init branch
    loss = sum(o.square().mean() for o in net(torch.randn(2, 1, 8, 12)))
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert missing == []
