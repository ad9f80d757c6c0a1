"""An AutoSeg fold's weights as the checkpoint nnunetv2's predictor loads.

nnunetv2 reads four things from a checkpoint to predict: ``network_weights`` (loaded strictly into
the network its trainer class builds from plans.json, so every name and every duplicate copy
nnU-Net's modules hold must be there), ``init_args["configuration"]``, ``trainer_name`` (the
class it looks up by name to build the network) and ``inference_allowed_mirroring_axes`` (None
when mirroring is off; an empty tuple would fail its check). ``init_args`` also carries the plans,
fold and dataset.json as nnU-Net's trainer records them, so the file reads like one nnU-Net wrote.
Only plain types are saved (tensors, numbers, strings, lists, dicts and a ``torch.device``), so
it loads with ``torch.load(weights_only=True)`` too; the optimizer state and training log are left
out, because prediction never reads them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from autoseg.atomic import atomic_path
from autoseg.interop.nnunet_weights import nnunet_state_dict


def nnunet_fold(fold: str) -> int | str:
    """nnU-Net records a fold as its number, or the word ``all``."""
    return int(fold) if fold.isdigit() else fold


def nnunet_checkpoint(
    weights: Mapping[str, torch.Tensor],
    init_args: Mapping[str, Any],
    trainer_name: str,
    mirror_axes: Sequence[int],
    source: Path | str,
) -> dict[str, Any]:
    """The checkpoint dict; ``init_args``: plans (nnU-Net's JSON), configuration, fold,
    dataset_json. Raises AutoSegError for a weight name nnU-Net's networks do not have."""
    return {
        "network_weights": nnunet_state_dict(weights, source),
        "init_args": {**init_args, "device": torch.device("cpu")},
        "trainer_name": trainer_name,
        "inference_allowed_mirroring_axes": tuple(int(a) for a in mirror_axes) or None,
    }


def save_nnunet_checkpoint(path: Path, checkpoint: Mapping[str, Any]) -> None:
    """Write atomically with ``torch.save`` (plain state, no pickled classes)."""
    with atomic_path(Path(path), suffix=".pth") as temporary:
        torch.save(dict(checkpoint), temporary)
