"""A trained model folder: everything inference needs, validated before any case is touched.

Training writes ``<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>/`` with plans.json,
dataset.json, dataset_fingerprint.json and one ``fold_<k>/`` per trained fold holding the
checkpoints. The folder is self-contained: the network is rebuilt from the plans' architecture and
the weights are read with ``weights_only=True``, so serving a model needs no trainer code, no
environment variables and no pickles. Opening a folder checks every file up front, so a broken or
incomplete model fails with one clear message instead of after the first case was preprocessed.
A version kept by a later training (``<model folder>/versions/<n>/``, see results_layout.py) is a
model folder of the same form and opens the same way; its ``versions/`` is never taken for a fold.

nnU-Net v2's model folders have the same layout and run as they are: their plans.json is translated
(``autoseg.interop.nnunet_plans``), their checkpoints are read with a short numpy allow-list and
their parameter names mapped onto AutoSeg's network (``autoseg.interop.nnunet_checkpoint``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoseg.checkpoint import FINAL, load_checkpoint
from autoseg.errors import AutoSegError
from autoseg.inference.model_files import ModelFiles, open_model_files
from autoseg.interop.nnunet_checkpoint import load_nnunet_checkpoint
from autoseg.interop.nnunet_plans import NNUNET_ORIGIN
from autoseg.network import build_network


def _read_checkpoint(file: Path, origin: str) -> dict[str, Any]:
    if origin == NNUNET_ORIGIN:
        return load_nnunet_checkpoint(file).as_autoseg_state()
    return load_checkpoint(file)


def _checkpoint_metadata(file: Path, configuration: str, origin: str) -> tuple[int, ...]:
    """Check a checkpoint belongs to ``configuration``; return its mirroring axes."""
    state = _read_checkpoint(file, origin)
    stored = state.get("configuration")
    if stored is not None and stored != configuration:
        raise AutoSegError(
            f"{file}: the checkpoint was trained for configuration {stored!r}, but its model "
            f"folder is for {configuration!r}. Fix: put the checkpoint in its own model folder."
        )
    axes = state.get("inference_allowed_mirroring_axes")
    return tuple(int(a) for a in axes) if axes is not None else ()


def _load_weights(network: nn.Module, file: Path, origin: str) -> None:
    state = _read_checkpoint(file, origin)
    try:
        network.load_state_dict(state["network_weights"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise AutoSegError(
            f"{file}: the weights do not fit the network of plans.json ({first}). Fix: use the "
            "plans.json that was written together with this checkpoint."
        ) from None


@dataclass(frozen=True)
class ModelFolder(ModelFiles):
    """A model folder whose checkpoints were checked too: what inference runs.

    The fields of ``ModelFiles``, plus ``mirror_axes``: the test-time mirroring axes the training
    allowed (from the first fold's checkpoint).
    """

    mirror_axes: tuple[int, ...] = ()

    @classmethod
    def open(
        cls,
        path: Path,
        folds: Iterable[int | str] | None = None,
        checkpoint: str = FINAL,
    ) -> ModelFolder:
        """Validate a model folder; ``folds`` None uses every numbered fold with the checkpoint.

        The files are checked first by the torch-free rule of model_files.py (the one the Slicer
        Predict module applies up front), then each fold's checkpoint.
        """
        files = open_model_files(path, folds, checkpoint)
        axes = [
            _checkpoint_metadata(files.checkpoint_file(name), files.configuration, files.origin)
            for name in files.folds
        ]
        return cls(
            **{f.name: getattr(files, f.name) for f in fields(ModelFiles)}, mirror_axes=axes[0]
        )

    @property
    def num_input_channels(self) -> int:
        """Image channels, plus one-hot foreground labels of the previous stage in a cascade."""
        extra = len(self.dataset.labels.foreground_labels) if self.is_cascade else 0
        return self.dataset.num_channels + extra

    @property
    def num_classes(self) -> int:
        return self.dataset.labels.num_segmentation_heads

    def build_network(self) -> nn.Module:
        """A fresh network of this model (random weights, deep supervision off)."""
        return build_network(
            self.config.architecture,
            self.num_input_channels,
            self.num_classes,
            deep_supervision=False,
        )

    def load_fold_networks(self, device: torch.device | str = "cpu") -> list[nn.Module]:
        """One network per fold with its weights, in eval mode on ``device``."""
        device = torch.device(device)
        networks = []
        for fold in self.folds:
            network = self.build_network()
            _load_weights(network, self.checkpoint_file(fold), self.origin)
            networks.append(network.to(device).eval())
        return networks

    def describe(self) -> dict[str, Any]:
        """A short JSON-friendly summary (for logs and prediction metadata)."""
        return {
            "model_folder": str(self.path),
            "configuration": self.configuration,
            "folds": list(self.folds),
            "checkpoint": self.checkpoint_name,
            "mirror_axes": list(self.mirror_axes),
            "origin": self.origin,
        }
