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

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from autoseg.checkpoint import FINAL, load_checkpoint
from autoseg.dataset import DatasetSpec, load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.interop.nnunet_checkpoint import load_nnunet_checkpoint
from autoseg.interop.nnunet_plans import NNUNET_ORIGIN, is_nnunet_plans, plans_from_nnunet
from autoseg.network import build_network
from autoseg.plans import ConfigurationPlan, Plans
from autoseg.results_layout import named_model_folder

PLANS_FILE = "plans.json"
DATASET_FILE = "dataset.json"
FOLD_PREFIX = "fold_"
ALL_FOLD = "all"


def _parse_folder_name(path: Path) -> str:
    """The configuration from a folder named ``<trainer>__<plans>__<configuration>`` (for a kept
    version ``<model folder>/versions/<n>``, from the model folder's name)."""
    parts = named_model_folder(path).name.split("__")
    if len(parts) != 3 or not all(parts):
        raise AutoSegError(
            f"{path}: a model folder is named <trainer>__<plans>__<configuration> "
            "(e.g. AutoSegTrainer__AutoSegPlans__3d_fullres). Fix: pass the folder that training "
            "wrote, without renaming it."
        )
    return parts[2]


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise AutoSegError(
            f"{path.parent}: {path.name} is missing ({what}). Fix: pass a complete model folder "
            "as written by training, or copy the file back."
        )


def _fold_name(fold: int | str) -> str:
    text = str(fold).strip()
    if text != ALL_FOLD and not text.isdigit():
        raise AutoSegError(f"fold {fold!r} is not valid. Fix: use a fold number or 'all'.")
    return text


def _detect_folds(path: Path, checkpoint: str) -> tuple[str, ...]:
    """Every ``fold_<k>`` that holds the checkpoint, in order; ``fold_all`` only when alone.

    Cross-validation folds win because their average is the method's ensemble; a model trained
    only on fold ``all`` (a common final model, e.g. from the Slicer module) is used as it is.
    """
    found = [
        child.name.removeprefix(FOLD_PREFIX)
        for child in path.glob(f"{FOLD_PREFIX}*")
        if (child / checkpoint).is_file() and child.name.removeprefix(FOLD_PREFIX).isdigit()
    ]
    if not found and (path / f"{FOLD_PREFIX}{ALL_FOLD}" / checkpoint).is_file():
        return (ALL_FOLD,)
    if not found:
        raise AutoSegError(
            f"{path}: no fold_<k> folder holds {checkpoint}. Fix: finish training at least one "
            "fold or choose another checkpoint (e.g. checkpoint_best.pth)."
        )
    return tuple(sorted(found, key=int))


def _select_folds(
    path: Path, folds: Iterable[int | str] | None, checkpoint: str
) -> tuple[str, ...]:
    if folds is None:
        return _detect_folds(path, checkpoint)
    names = tuple(dict.fromkeys(_fold_name(f) for f in folds))
    if not names:
        raise AutoSegError(f"{path}: no folds were asked for. Fix: name folds or pass None.")
    for name in names:
        _require_file(path / f"{FOLD_PREFIX}{name}" / checkpoint, f"the weights of fold {name}")
    return names


AUTOSEG_ORIGIN = "autoseg"


def _load_plans(file: Path, configuration: str) -> tuple[Plans, str]:
    """The folder's plans and who wrote them (AutoSeg, or nnU-Net: then translated)."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AutoSegError(
            f"{file}: cannot read the plans ({error}). Fix: restore the plans.json that was "
            "written together with this model."
        ) from None
    if not isinstance(data, dict):
        raise AutoSegError(f"{file}: not a plans file (no JSON object). Fix: restore plans.json.")
    if is_nnunet_plans(data):
        return plans_from_nnunet(data, str(file), configuration), NNUNET_ORIGIN
    return Plans.from_json(data, str(file)), AUTOSEG_ORIGIN


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
class ModelFolder:
    """A validated model folder.

    Attributes:
        path: the model folder.
        plans: its plans (every configuration; ``configuration`` names the trained one).
        dataset: its dataset.json (labels, channels, file ending).
        configuration: the trained configuration, from the folder name.
        folds: the fold names to use ("0", "1", ..., or "all"), each with ``checkpoint_name``.
        checkpoint_name: the checkpoint file inside each fold folder.
        mirror_axes: test-time mirroring axes the training allowed (from the first fold).
        origin: who wrote the folder: "autoseg", or "nnunet" (an nnU-Net v2 model folder).
    """

    path: Path
    plans: Plans
    dataset: DatasetSpec
    configuration: str
    folds: tuple[str, ...]
    checkpoint_name: str = FINAL
    mirror_axes: tuple[int, ...] = ()
    origin: str = AUTOSEG_ORIGIN

    @classmethod
    def open(
        cls,
        path: Path,
        folds: Iterable[int | str] | None = None,
        checkpoint: str = FINAL,
    ) -> ModelFolder:
        """Validate a model folder; ``folds`` None uses every numbered fold with the checkpoint."""
        path = Path(path)
        if not path.is_dir():
            raise AutoSegError(
                f"{path}: model folder not found. Fix: pass the folder training wrote "
                "(<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>)."
            )
        configuration = _parse_folder_name(path)
        _require_file(path / PLANS_FILE, "the plans the model was trained with")
        _require_file(path / DATASET_FILE, "the dataset's labels and channels")
        plans, origin = _load_plans(path / PLANS_FILE, configuration)
        if configuration not in plans.configurations:
            raise AutoSegError(
                f"{path / PLANS_FILE}: has no configuration {configuration!r} (available: "
                f"{', '.join(plans.configurations) or 'none'}). Fix: restore the plans.json that "
                "was written together with this model."
            )
        dataset = load_dataset_json(path / DATASET_FILE)
        names = _select_folds(path, folds, checkpoint)
        axes = [
            _checkpoint_metadata(path / f"{FOLD_PREFIX}{name}" / checkpoint, configuration, origin)
            for name in names
        ]
        return cls(path, plans, dataset, configuration, names, checkpoint, axes[0], origin)

    @property
    def config(self) -> ConfigurationPlan:
        return self.plans.configuration(self.configuration)

    @property
    def num_input_channels(self) -> int:
        """Image channels, plus one-hot foreground labels of the previous stage in a cascade."""
        extra = len(self.dataset.labels.foreground_labels) if self.is_cascade else 0
        return self.dataset.num_channels + extra

    @property
    def is_cascade(self) -> bool:
        return self.config.previous_stage is not None

    @property
    def num_classes(self) -> int:
        return self.dataset.labels.num_segmentation_heads

    def checkpoint_file(self, fold: str) -> Path:
        return self.path / f"{FOLD_PREFIX}{fold}" / self.checkpoint_name

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
