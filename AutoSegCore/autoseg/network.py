"""The two U-Nets of the method (plain and residual encoder), built from an ``ArchitectureSpec``.

The plans describe a network as numbers only (features, kernels, strides, block counts); this module
turns them into a torch module. Both networks share one decoder: a transposed convolution up to the
skip's resolution, concatenation with the skip, a stack of conv blocks and a 1x1 segmentation head per
decoder stage. All heads are always built, so the state_dict is the same with and without deep
supervision: training runs with it on, final validation and inference switch the ``deep_supervision``
attribute off after loading the weights. Head parameters carry ``seg_layers`` in their names because
pretrained-weight transfer copies everything except the heads.

The parameter count and the per-stage feature-map sizes are also derived analytically from the spec,
so planning summaries (``network.txt``) never need to build a module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from autoseg.errors import AutoSegError
from autoseg.plans import ArchitectureSpec

Size = tuple[int, ...]

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_TRANSPOSED = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_AVG_POOL = {2: nn.AvgPool2d, 3: nn.AvgPool3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_CONV_TYPES = (*_CONV.values(), *_TRANSPOSED.values())

# Every norm here is affine, so each one has 2*C parameters (the analytic count relies on that).
# Instance norm is computed as GroupNorm with one channel per group: the same maths and the same
# parameter names (weight, bias) as an affine InstanceNorm, but torch's InstanceNorm returns a view
# that the in-place activation must copy back during training; this form is ~12% faster on CPU.
NORMS: dict[str, Callable[[int, int], nn.Module]] = {
    "InstanceNorm": lambda _dim, c: nn.GroupNorm(c, c, eps=1e-5, affine=True),
    "BatchNorm": lambda dim, c: _BATCH_NORM[dim](c, eps=1e-5, affine=True),
}
NONLINS: dict[str, Callable[[], nn.Module]] = {
    "LeakyReLU": lambda: nn.LeakyReLU(0.01, inplace=True),
    "ReLU": lambda: nn.ReLU(inplace=True),
}


class _Ops:
    """The layer factories of one spec (dimension, norm, nonlinearity, conv bias) in one place."""

    def __init__(self, spec: ArchitectureSpec) -> None:
        self.dim = len(spec.kernel_sizes[0])
        self.bias = spec.conv_bias
        self._norm = NORMS[spec.norm]
        self._nonlin = NONLINS[spec.nonlin]

    def conv(
        self, cin: int, cout: int, kernel: Size, stride: Size = (1,), bias: bool | None = None
    ) -> nn.Module:
        """Conv with 'same' padding; ``stride`` (1,) means 1 on every axis; bias None = spec's."""
        stride = tuple(stride) * self.dim if len(stride) == 1 else tuple(stride)
        padding = tuple((k - 1) // 2 for k in kernel)
        use_bias = self.bias if bias is None else bias
        return _CONV[self.dim](cin, cout, tuple(kernel), stride, padding, bias=use_bias)

    def transposed(self, cin: int, cout: int, stride: Sequence[int]) -> nn.Module:
        return _TRANSPOSED[self.dim](cin, cout, tuple(stride), tuple(stride), bias=self.bias)

    def pool(self, stride: Sequence[int]) -> nn.Module:
        return _AVG_POOL[self.dim](tuple(stride), tuple(stride))

    def norm(self, channels: int) -> nn.Module:
        return self._norm(self.dim, channels)

    def nonlin(self) -> nn.Module:
        return self._nonlin()


class ConvBlock(nn.Module):
    """Conv -> norm -> nonlinearity (the nonlinearity is left out inside residual blocks)."""

    def __init__(
        self, ops: _Ops, cin: int, cout: int, kernel: Size, stride: Size = (1,), act: bool = True
    ) -> None:
        super().__init__()
        self.conv = ops.conv(cin, cout, kernel, stride)
        self.norm = ops.norm(cout)
        self.act = ops.nonlin() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualBlock(nn.Module):
    """ResNet-D basic block: the skip path average-pools before its 1x1 projection (no lost voxels)."""

    def __init__(self, ops: _Ops, cin: int, cout: int, kernel: Size, stride: Size = (1,)) -> None:
        super().__init__()
        self.conv1 = ConvBlock(ops, cin, cout, kernel, stride)
        self.conv2 = ConvBlock(ops, cout, cout, kernel, act=False)
        skip: list[nn.Module] = []
        if any(s != 1 for s in stride):
            skip.append(ops.pool(stride))
        if cin != cout:
            # The norm right after makes a bias redundant, so the projection has none.
            skip += [ops.conv(cin, cout, (1,) * ops.dim, bias=False), ops.norm(cout)]
        self.skip = nn.Sequential(*skip) if skip else nn.Identity()
        self.act = ops.nonlin()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class Encoder(nn.Module):
    """An optional full-resolution stem, then stages whose first block downsamples by its stride."""

    def __init__(self, stem: nn.Module, stages: list[nn.Module]) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage (the skips), highest resolution first."""
        x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


def _encoder_stages(spec: ArchitectureSpec, ops: _Ops, cin: int, block: type) -> list[nn.Module]:
    stages = []
    for cout, kernel, stride, n in _stage_rows(spec):
        blocks = [block(ops, cin, cout, kernel, stride)]
        blocks += [block(ops, cout, cout, kernel) for _ in range(n - 1)]
        stages.append(nn.Sequential(*blocks))
        cin = cout
    return stages


class Decoder(nn.Module):
    """Decoder stages deepest first; stage i uses ``n_conv_per_stage_decoder[i]`` conv blocks."""

    def __init__(self, spec: ArchitectureSpec, ops: _Ops, out_channels: int) -> None:
        super().__init__()
        features, ones = spec.features_per_stage, (1,) * ops.dim
        upsamplers, stages, heads = [], [], []
        for i, s in enumerate(range(spec.n_stages - 1, 0, -1)):
            skip, kernel = features[s - 1], spec.kernel_sizes[s - 1]
            upsamplers.append(ops.transposed(features[s], skip, spec.strides[s]))
            n = spec.n_conv_per_stage_decoder[i]
            blocks = [ConvBlock(ops, 2 * skip, skip, kernel)]
            blocks += [ConvBlock(ops, skip, skip, kernel) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            heads.append(ops.conv(skip, out_channels, ones, bias=True))
        self.upsamplers = nn.ModuleList(upsamplers)
        self.stages = nn.ModuleList(stages)
        self.seg_layers = nn.ModuleList(heads)

    def forward(
        self, skips: list[torch.Tensor], deep_supervision: bool
    ) -> torch.Tensor | list[torch.Tensor]:
        x, outputs, last = skips[-1], [], len(self.stages) - 1
        for i, (up, stage) in enumerate(zip(self.upsamplers, self.stages, strict=True)):
            x = stage(torch.cat((up(x), skips[-(i + 2)]), dim=1))
            if deep_supervision:
                outputs.append(self.seg_layers[i](x))
            elif i == last:
                return self.seg_layers[i](x)
        return outputs[::-1]


class UNet(nn.Module):
    """Encoder + decoder; ``deep_supervision`` may be switched at any time without touching weights."""

    def __init__(self, encoder: nn.Module, decoder: Decoder, *, deep_supervision: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.deep_supervision = deep_supervision

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits at full resolution, or (deep supervision) one per decoder stage, highest first."""
        return self.decoder(self.encoder(x), self.deep_supervision)


def _stage_rows(spec: ArchitectureSpec) -> zip[tuple[int, Size, Size, int]]:
    return zip(
        spec.features_per_stage,
        spec.kernel_sizes,
        spec.strides,
        spec.n_blocks_per_stage,
        strict=True,
    )


def _he_init(module: nn.Module) -> None:
    """He (kaiming normal, a=1e-2) weights for every conv and transposed conv; zero biases."""
    for m in module.modules():
        if isinstance(m, _CONV_TYPES):
            nn.init.kaiming_normal_(m.weight, a=1e-2)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _plain_unet(
    spec: ArchitectureSpec, in_channels: int, out_channels: int, *, deep_supervision: bool
) -> nn.Module:
    ops = _Ops(spec)
    encoder = Encoder(nn.Identity(), _encoder_stages(spec, ops, in_channels, ConvBlock))
    net = UNet(encoder, Decoder(spec, ops, out_channels), deep_supervision=deep_supervision)
    _he_init(net)
    return net


def _residual_unet(
    spec: ArchitectureSpec, in_channels: int, out_channels: int, *, deep_supervision: bool
) -> nn.Module:
    ops, c0 = _Ops(spec), spec.features_per_stage[0]
    stem = ConvBlock(ops, in_channels, c0, spec.kernel_sizes[0])
    encoder = Encoder(stem, _encoder_stages(spec, ops, c0, ResidualBlock))
    net = UNet(encoder, Decoder(spec, ops, out_channels), deep_supervision=deep_supervision)
    _he_init(net)
    # Zero the last norm of every residual branch: each block starts as (activated) identity,
    # which keeps deep residual encoders stable early in training.
    for block in net.modules():
        if isinstance(block, ResidualBlock):
            nn.init.zeros_(block.conv2.norm.weight)
            nn.init.zeros_(block.conv2.norm.bias)
    return net


NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "PlainConvUNet": _plain_unet,
    "ResidualEncoderUNet": _residual_unet,
}


def _check_name(kind: str, value: str, allowed: dict[str, object]) -> None:
    if value not in allowed:
        raise AutoSegError(
            f"architecture {kind} '{value}' is unknown (allowed: {', '.join(allowed)}). "
            f'Fix: set the plans\' architecture "{kind}" to one of them.'
        )


def _structure_problems(spec: ArchitectureSpec) -> list[str]:
    n, dim = spec.n_stages, len(spec.kernel_sizes[0]) if spec.kernel_sizes else 0
    per_stage = (spec.kernel_sizes, spec.strides, spec.n_blocks_per_stage)
    checks = [
        (n >= 2, f"needs at least 2 stages, got {n}"),
        (dim in (2, 3), f"kernel_sizes must be 2D or 3D, got {spec.kernel_sizes[:1]}"),
        (
            all(len(v) == n for v in per_stage),
            f"kernel_sizes, strides, n_blocks_per_stage need {n}",
        ),
        (len(spec.n_conv_per_stage_decoder) == n - 1, f"n_conv_per_stage_decoder needs {n - 1}"),
        (all(len(v) == dim for v in (*spec.kernel_sizes, *spec.strides)), f"all need {dim} axes"),
        (all(k % 2 == 1 for ks in spec.kernel_sizes for k in ks), "kernel sizes must be odd"),
        (
            min((*spec.n_blocks_per_stage, *spec.n_conv_per_stage_decoder), default=0) >= 1,
            "block and conv counts must be >= 1",
        ),
        (min(spec.features_per_stage, default=0) >= 1, "features_per_stage must be >= 1"),
    ]
    return [message for ok, message in checks if not ok]


def _validate(spec: ArchitectureSpec) -> None:
    """Reject specs the builders cannot honour, with one message listing every problem."""
    _check_name("network", spec.network, NETWORKS)
    _check_name("norm", spec.norm, NORMS)
    _check_name("nonlin", spec.nonlin, NONLINS)
    problems = _structure_problems(spec)
    if problems:
        raise AutoSegError(
            f"architecture of {spec.network} is inconsistent: {'; '.join(problems)}. "
            "Fix: repair the plans' architecture or re-run plan_experiment."
        )


def build_network(
    spec: ArchitectureSpec, in_channels: int, out_channels: int, *, deep_supervision: bool = True
) -> nn.Module:
    """Build and He-initialise the network the spec names (2D or 3D from the kernel sizes)."""
    _validate(spec)
    return NETWORKS[spec.network](
        spec, in_channels, out_channels, deep_supervision=deep_supervision
    )


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (buffers such as BatchNorm running statistics are not parameters)."""
    return sum(p.numel() for p in module.parameters())


def _conv_count(cin: int, cout: int, kernel: Size, bias: bool) -> int:
    return cin * cout * math.prod(kernel) + (cout if bias else 0)


def _block_count(cin: int, cout: int, kernel: Size, bias: bool) -> int:
    return _conv_count(cin, cout, kernel, bias) + 2 * cout  # + affine norm


def _encoder_count(spec: ArchitectureSpec, in_channels: int) -> int:
    bias, residual = spec.conv_bias, spec.network == "ResidualEncoderUNet"
    cin = spec.features_per_stage[0] if residual else in_channels
    total = _block_count(in_channels, cin, spec.kernel_sizes[0], bias) if residual else 0
    for cout, kernel, _stride, n in _stage_rows(spec):
        if residual:
            projection = _block_count(cin, cout, (1,), False) if cin != cout else 0
            total += projection + _block_count(cin, cout, kernel, bias)
            total += (2 * n - 1) * _block_count(cout, cout, kernel, bias)
        else:
            total += _block_count(cin, cout, kernel, bias)
            total += (n - 1) * _block_count(cout, cout, kernel, bias)
        cin = cout
    return total


def expected_parameter_count(spec: ArchitectureSpec, in_channels: int, out_channels: int) -> int:
    """The parameter count of ``build_network(spec, ...)``, from the spec's numbers alone."""
    _validate(spec)
    features, bias = spec.features_per_stage, spec.conv_bias
    total = _encoder_count(spec, in_channels)
    for i, s in enumerate(range(spec.n_stages - 1, 0, -1)):
        skip, kernel, n = (
            features[s - 1],
            spec.kernel_sizes[s - 1],
            spec.n_conv_per_stage_decoder[i],
        )
        total += _conv_count(features[s], skip, spec.strides[s], bias)
        total += _block_count(2 * skip, skip, kernel, bias)
        total += (n - 1) * _block_count(skip, skip, kernel, bias)
        total += _conv_count(skip, out_channels, (1,), True)
    return total


def feature_map_sizes(spec: ArchitectureSpec, patch_size: Sequence[int]) -> list[Size]:
    """Spatial size of every encoder stage's output for one patch (stage 0 first).

    Raises AutoSegError when the patch is not divisible by the total stride: the decoder could not
    concatenate its upsampled maps with the skips.
    """
    total = tuple(math.prod(axis) for axis in zip(*spec.strides, strict=True))
    if len(patch_size) != len(total) or any(p % t for p, t in zip(patch_size, total, strict=False)):
        raise AutoSegError(
            f"patch size {_fmt(patch_size)} does not fit {spec.network}: every axis must be a "
            f"multiple of the total stride {_fmt(total)}. Fix: use the plans' patch size."
        )
    sizes, size = [], tuple(patch_size)
    for stride in spec.strides:
        size = tuple(p // s for p, s in zip(size, stride, strict=True))
        sizes.append(size)
    return sizes


def _fmt(values: Sequence[int]) -> str:
    return "x".join(str(v) for v in values)


def describe_network(
    spec: ArchitectureSpec, in_channels: int, out_channels: int, patch_size: Sequence[int]
) -> str:
    """A readable multi-line summary of the network for one patch (written as ``network.txt``)."""
    _validate(spec)
    sizes = feature_map_sizes(spec, patch_size)
    dim = len(spec.kernel_sizes[0])
    unit = "residual blocks" if spec.network == "ResidualEncoderUNet" else "conv blocks"
    lines = [
        f"network: {spec.network} ({dim}D, norm {spec.norm}, nonlin {spec.nonlin}, "
        f"conv bias {str(spec.conv_bias).lower()})",
        f"input: {in_channels} channel(s), patch {_fmt(patch_size)}; output: {out_channels} channel(s)",
    ]
    if spec.network == "ResidualEncoderUNet":
        lines.append(
            f"stem: 1 conv block, {spec.features_per_stage[0]} channels, "
            f"kernel {_fmt(spec.kernel_sizes[0])}, feature map {_fmt(patch_size)}"
        )
    lines.append(f"{'stage':>5} {'channels':>8} {'kernel':>7} {'stride':>7} {unit:>15} feature map")
    for s, ((cout, kernel, stride, n), size) in enumerate(
        zip(_stage_rows(spec), sizes, strict=True)
    ):
        lines.append(f"{s:>5} {cout:>8} {_fmt(kernel):>7} {_fmt(stride):>7} {n:>15} {_fmt(size)}")
    decoder = ", ".join(str(n) for n in spec.n_conv_per_stage_decoder)
    outputs = ", ".join(f"{out_channels}x{_fmt(size)}" for size in sizes[:-1])
    lines += [
        f"decoder conv blocks per stage (deepest first): {decoder}",
        f"parameters: {expected_parameter_count(spec, in_channels, out_channels):,}",
        f"deep supervision outputs (highest resolution first): {outputs}",
    ]
    return "\n".join(lines)
