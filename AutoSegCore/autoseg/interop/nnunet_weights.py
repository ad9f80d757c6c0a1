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
