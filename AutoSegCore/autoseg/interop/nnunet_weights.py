"""nnU-Net's parameter names mapped onto AutoSeg's network (same layers, same shapes, other names).

nnU-Net's networks (the ``dynamic_network_architectures`` package) and AutoSeg's
(``autoseg.network``) are the same two U-Nets: each conv, norm, transposed conv and head exists in
both with the same shape, only the module paths differ. nnU-Net's names also hold every tensor
twice: its decoder keeps a reference to the encoder (``decoder.encoder.*``) and each conv block
keeps its layers in a second list (``*.all_modules.*``); those copies are dropped.

The mapping is by name only, one rule per kind of layer; a name no rule knows means the trainer
built another network than the plans describe, and is refused by name rather than ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from autoseg.errors import AutoSegError

_WRAPPERS = ("module.", "_orig_mod.")  # DDP and torch.compile prefixes
_DUPLICATE = re.compile(r"^decoder\.encoder\.|\.all_modules\.")

Rename = Callable[[re.Match[str]], str]


def _skip_layer(match: re.Match[str]) -> str:
    """ResNet-D projection: nnU-Net's ``skip.K`` block (conv + norm) is our ``skip.K``, ``skip.K+1``."""
    stage, block, index, layer, rest = match.groups()
    position = int(index) + (1 if layer == "norm" else 0)
    return f"encoder.stages.{stage}.{block}.skip.{position}.{rest}"


_RULES: tuple[tuple[re.Pattern[str], str | Rename], ...] = (
    (re.compile(r"^encoder\.stem\.convs\.0\.((?:conv|norm)\..+)$"), r"encoder.stem.\1"),
    (re.compile(r"^encoder\.stages\.(\d+)\.0\.convs\.(\d+)\.(.+)$"), r"encoder.stages.\1.\2.\3"),
    (
        re.compile(r"^encoder\.stages\.(\d+)\.blocks\.(\d+)\.(conv[12]\..+)$"),
        r"encoder.stages.\1.\2.\3",
    ),
    (
        re.compile(r"^encoder\.stages\.(\d+)\.blocks\.(\d+)\.skip\.(\d+)\.(conv|norm)\.(.+)$"),
        _skip_layer,
    ),
    (re.compile(r"^decoder\.transpconvs\.(\d+)\.(.+)$"), r"decoder.upsamplers.\1.\2"),
    (re.compile(r"^decoder\.stages\.(\d+)\.convs\.(\d+)\.(.+)$"), r"decoder.stages.\1.\2.\3"),
    (re.compile(r"^decoder\.seg_layers\.(\d+)\.(.+)$"), r"decoder.seg_layers.\1.\2"),
)


def _unwrapped(name: str) -> str:
    for prefix in _WRAPPERS:
        while name.startswith(prefix):
            name = name[len(prefix) :]
    return name


def autoseg_name(name: str) -> str | None:
    """AutoSeg's name for nnU-Net parameter ``name``; None when no rule knows it."""
    for pattern, replacement in _RULES:
        match = pattern.match(name)
        if match is None:
            continue
        if callable(replacement):
            return replacement(match)
        return match.expand(replacement)
    return None


def autoseg_state_dict(
    weights: Mapping[str, torch.Tensor], source: Path | str
) -> dict[str, torch.Tensor]:
    """nnU-Net ``network_weights`` renamed for AutoSeg's network (duplicate copies dropped).

    Raises AutoSegError naming the first parameter that belongs to no standard nnU-Net U-Net.
    """
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in weights.items():
        plain = _unwrapped(str(name))
        if _DUPLICATE.search(plain):
            continue
        target = autoseg_name(plain)
        if target is None or not isinstance(tensor, torch.Tensor):
            raise AutoSegError(
                f"{source}: the checkpoint holds parameter '{name}', which no standard "
                "PlainConvUNet or ResidualEncoderUNet has, so its trainer built another network "
                "than plans.json describes. Fix: use a model whose trainer keeps nnU-Net's "
                "standard networks."
            )
        renamed[target] = tensor
    return renamed


# The reverse direction (export): AutoSeg's parameter names -> nnU-Net's. The residual blocks'
# projection is the one place where one nnU-Net module is two of ours (conv, norm), handled apart.
_REVERSE_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^encoder\.stem\.((?:conv|norm)\..+)$"), r"encoder.stem.convs.0.\1"),
    (
        re.compile(r"^encoder\.stages\.(\d+)\.(\d+)\.(conv[12]\..+)$"),
        r"encoder.stages.\1.blocks.\2.\3",
    ),
    (
        re.compile(r"^encoder\.stages\.(\d+)\.(\d+)\.((?:conv|norm)\..+)$"),
        r"encoder.stages.\1.0.convs.\2.\3",
    ),
    (re.compile(r"^decoder\.upsamplers\.(\d+)\.(.+)$"), r"decoder.transpconvs.\1.\2"),
    (re.compile(r"^decoder\.stages\.(\d+)\.(\d+)\.(.+)$"), r"decoder.stages.\1.convs.\2.\3"),
    (re.compile(r"^decoder\.seg_layers\.(\d+)\.(.+)$"), r"decoder.seg_layers.\1.\2"),
)
_PROJECTION = re.compile(r"^encoder\.stages\.(\d+)\.(\d+)\.skip\.(\d+)\.(.+)$")
# nnU-Net's conv blocks list their layers twice (``conv``/``norm`` and ``all_modules.0``/``.1``)
# and its decoder holds the encoder (``decoder.encoder.*``): its state dict has every copy.
_LAYER_COPY = re.compile(r"\.(conv|norm)\.([^.]+)$")
_COPY_INDEX = {"conv": 0, "norm": 1}


def _projection_name(match: re.Match[str], projection_ends: Mapping[str, int]) -> str:
    """Our projection is ``skip.K`` (conv), ``skip.K+1`` (norm), after an optional pool at 0;
    nnU-Net's is one block ``skip.K`` holding ``conv`` and ``norm``."""
    stage, block, index, rest = match.groups()
    last = projection_ends[f"{stage}.{block}"]
    layer, position = ("norm", last - 1) if int(index) == last else ("conv", int(index))
    return f"encoder.stages.{stage}.blocks.{block}.skip.{position}.{layer}.{rest}"


def nnunet_name(name: str, projection_ends: Mapping[str, int] | None = None) -> str | None:
    """nnU-Net's name for AutoSeg parameter ``name`` (the primary copy); None when no rule knows
    it. ``projection_ends``: per residual block ``"stage.block"``, the index of its projection's
    last module (its norm), needed for the projection's names."""
    match = _PROJECTION.match(name)
    if match is not None and projection_ends is not None:
        return _projection_name(match, projection_ends)
    for pattern, replacement in _REVERSE_RULES:
        match = pattern.match(name)
        if match is not None:
            return match.expand(replacement)
    return None


def _projection_ends(names: list[str]) -> dict[str, int]:
    ends: dict[str, int] = {}
    for name in names:
        match = _PROJECTION.match(name)
        if match is not None:
            key = f"{match.group(1)}.{match.group(2)}"
            ends[key] = max(ends.get(key, 0), int(match.group(3)))
    return ends


def _with_copies(name: str) -> list[str]:
    names = [name]
    copy = _LAYER_COPY.search(name)
    if copy is not None:
        start, layer = copy.start(), copy.group(1)
        names.append(f"{name[:start]}.all_modules.{_COPY_INDEX[layer]}.{copy.group(2)}")
    return names + [f"decoder.{n}" for n in names if n.startswith("encoder.")]


def nnunet_state_dict(
    weights: Mapping[str, torch.Tensor], source: Path | str
) -> dict[str, torch.Tensor]:
    """AutoSeg ``network_weights`` under nnU-Net's names, with every copy nnU-Net's network
    holds, so ``load_state_dict`` of nnU-Net's own network (strict) accepts them.

    Raises AutoSegError naming the first parameter no rule knows (not one of our two U-Nets)."""
    names = [_unwrapped(str(n)) for n in weights]
    ends = _projection_ends(names)
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in zip(names, weights.values(), strict=True):
        target = nnunet_name(name, ends)
        if target is None:
            raise AutoSegError(
                f"{source}: the checkpoint holds parameter '{name}', which AutoSeg's "
                "PlainConvUNet and ResidualEncoderUNet do not have, so nnU-Net could not load "
                "it. Fix: export a model trained by AutoSeg with its own networks."
            )
        for copy in _with_copies(target):
            renamed[copy] = tensor
    return renamed
