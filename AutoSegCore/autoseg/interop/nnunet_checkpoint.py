"""Read an nnU-Net v2 checkpoint safely: ``weights_only=True`` plus the few numpy types it needs.

nnU-Net saves its checkpoints with plain ``torch.save`` of a dict: ``network_weights``, ``init_args``
(plans, configuration, fold, dataset_json, device), ``trainer_name``,
``inference_allowed_mirroring_axes``, the optimizer state and the training log. The log holds numpy
scalars (losses, Dice values), which torch's weights-only unpickler refuses by default. Loading the
file with ``weights_only=False`` would let it run any code, so instead the unpickler is allowed
exactly what rebuilding a numpy scalar takes: numpy's scalar constructor (under its numpy 2 and its
numpy 1 module name, since published checkpoints were written with either) and the dtype classes of
float32 and float64 values. Measured on checkpoints written by nnunetv2 2.8.1 (numpy 2, torch 2.13):
they need the scalar constructor, ``numpy.dtype`` and ``numpy.dtypes.Float32DType``; float64 and
the numpy 1 name are what nnU-Net's logs hold when the Dice values were computed in float64 or the
file was written under numpy 1. The allow-list applies only inside this load (a context, never a
global registration), and anything else in the file is refused with the file and the type named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoseg.errors import AutoSegError
from autoseg.interop.nnunet_weights import autoseg_state_dict


def _allowed_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core to numpy._core
    scalar = core.multiarray.scalar
    allowed: list[Any] = [
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        np.dtype,
    ]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles a dtype by its class
    if dtypes is not None:
        allowed += [dtypes.Float32DType, dtypes.Float64DType]
    return allowed


def _refused_type(message: str) -> str:
    """The global or class torch's weights-only unpickler refused, from its error message."""
    match = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"got <class '([\w.]+)'>", message)
    return match.group(1) if match else ""


def _load(path: Path) -> dict[str, Any]:
    try:
        with torch.serialization.safe_globals(_allowed_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for damaged or unsafe files
        refused = _refused_type(str(error))
        if refused:
            raise AutoSegError(
                f"{path}: refused to load: the checkpoint needs '{refused}' to unpickle, and "
                "loading it could run code. AutoSeg reads checkpoints holding tensors, numbers, "
                "strings and numpy scalars only. Fix: re-save the checkpoint's weights as plain "
                "tensors, or use a checkpoint from a trusted nnU-Net training."
            ) from None
        first = (str(error).strip().splitlines() or [""])[0]
        raise AutoSegError(
            f"{path}: cannot read the checkpoint ({type(error).__name__}: {first}). "
            "Fix: copy the file again; it is damaged or not a torch checkpoint."
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("network_weights"), dict):
        raise AutoSegError(
            f"{path}: not an nnU-Net checkpoint (no 'network_weights' entry). Fix: pass the "
            "checkpoint nnU-Net's training wrote (fold_<k>/checkpoint_final.pth)."
        )
    return state


@dataclass(frozen=True)
class NnUNetCheckpoint:
    """What inference needs from an nnU-Net checkpoint, with the weights in AutoSeg's names."""

    network_weights: dict[str, torch.Tensor]
    configuration: str | None
    trainer_name: str | None
    mirror_axes: tuple[int, ...]
    # Epochs the checkpoint was trained for (its current_epoch), which fine-tuning scales from.
    current_epoch: int | None = None

    def as_autoseg_state(self) -> dict[str, Any]:
        """The same content in the shape of an AutoSeg checkpoint (for the model folder)."""
        return {
            "network_weights": self.network_weights,
            "configuration": self.configuration,
            "trainer_name": self.trainer_name,
            "inference_allowed_mirroring_axes": list(self.mirror_axes),
            "current_epoch": self.current_epoch,
        }


def load_nnunet_checkpoint(path: Path) -> NnUNetCheckpoint:
    """Load ``path`` safely and map its parameter names onto AutoSeg's network."""
    path = Path(path)
    if not path.is_file():
        raise AutoSegError(f"{path}: checkpoint not found")
    state = _load(path)
    init_args = state.get("init_args") if isinstance(state.get("init_args"), dict) else {}
    axes = state.get("inference_allowed_mirroring_axes")
    epoch = state.get("current_epoch")
    return NnUNetCheckpoint(
        network_weights=autoseg_state_dict(state["network_weights"], path),
        configuration=init_args.get("configuration"),
        trainer_name=state.get("trainer_name"),
        mirror_axes=tuple(int(a) for a in axes) if axes is not None else (),
        current_epoch=int(epoch) if isinstance(epoch, int | float) else None,
    )
