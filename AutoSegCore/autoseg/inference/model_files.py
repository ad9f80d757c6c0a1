"""A model folder's files checked without torch: the rule that says whether predict can run it.

``ModelFolder.open`` (model_folder.py) checks a folder in two steps: its files (name, plans.json,
dataset.json, the folds holding the checkpoint) and then its checkpoints, which needs torch. The
first step lives here, torch-free, so that the Slicer Predict module, which must not load torch in
Slicer's process, refuses a folder up front by the very rule the engine applies once it runs (one
rule, one definition), instead of accepting it and failing only after the engine has started.

nnU-Net v2's plans.json is translated here too (``autoseg.interop.nnunet_plans``, torch-free), so
a plans file whose settings AutoSeg cannot reproduce is refused at this step as well.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from autoseg.dataset import DatasetSpec, load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.interop.nnunet_plans import NNUNET_ORIGIN, is_nnunet_plans, plans_from_nnunet
from autoseg.plans import ConfigurationPlan, Plans
from autoseg.results_layout import (
    ALL_FOLDS,
    DATASET_JSON,
    FINAL_CHECKPOINT,
    FOLD_PREFIX,
    PLANS_FILE,
    configuration_of,
    fold_folder_name,
    fold_of_folder,
    is_model_folder_name,
    model_folder_name,
    named_model_folder,
    split_model_folder_name,
)

AUTOSEG_ORIGIN = "autoseg"


def model_configuration(path: Path) -> str:
    """The configuration from a folder named ``<trainer>__<plans>__<configuration>`` (for a kept
    version ``<model folder>/versions/<n>``, from the model folder's name)."""
    name = named_model_folder(path).name
    if not is_model_folder_name(name):
        raise AutoSegError(
            f"{path}: a model folder is named <trainer>__<plans>__<configuration> "
            "(e.g. AutoSegTrainer__AutoSegPlans__3d_fullres). Fix: pass the folder that training "
            "wrote, without renaming it."
        )
    return configuration_of(name)


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise AutoSegError(
            f"{path.parent}: {path.name} is missing ({what}). Fix: pass a complete model folder "
            "as written by training, or copy the file back."
        )


def _fold_name(fold: int | str) -> str:
    text = str(fold).strip()
    if text != ALL_FOLDS and not text.isdigit():
        raise AutoSegError(f"fold {fold!r} is not valid. Fix: use a fold number or 'all'.")
    return text


def _detect_folds(path: Path, checkpoint: str) -> tuple[str, ...]:
    """Every ``fold_<k>`` that holds the checkpoint, in order; ``fold_all`` only when alone.

    Cross-validation folds win because their average is the method's ensemble; a model trained
    only on fold ``all`` (a common final model, e.g. from the Slicer module) is used as it is.
    """
    found = [
        fold
        for child in path.glob(f"{FOLD_PREFIX}*")
        for fold in [fold_of_folder(child.name)]
        if fold is not None and fold.isdigit() and (child / checkpoint).is_file()
    ]
    if not found and (path / fold_folder_name(ALL_FOLDS) / checkpoint).is_file():
        return (ALL_FOLDS,)
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
        _require_file(path / fold_folder_name(name) / checkpoint, f"the weights of fold {name}")
    return names


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


@dataclass(frozen=True)
class ModelPlans:
    """A model folder's plans and dataset description, read without its folds' weights.

    What planning a dataset from a model (``--plans-from``) and a warm start need: how the model's
    training data was prepared and what it predicts, whether or not a fold is trained.

    Attributes:
        folder: the model folder (``<trainer>__<plans>__<configuration>``, or a version kept in one).
        configuration: the trained configuration, from the folder name.
        plans: its plans (an nnU-Net model's translated into AutoSeg's).
        dataset: its dataset.json (channels and labels the weights were trained for).
        origin: who wrote the folder: "autoseg", or "nnunet" (an nnU-Net v2 model folder).
    """

    folder: Path
    configuration: str
    plans: Plans
    dataset: DatasetSpec
    origin: str = AUTOSEG_ORIGIN

    @property
    def config(self) -> ConfigurationPlan:
        return self.plans.configuration(self.configuration)


def read_model_plans(path: Path) -> ModelPlans:
    """Check and read a model folder's name, plans.json and dataset.json (no folds needed).

    Raises AutoSegError (one line naming the file and the fix) for a folder that is missing,
    misnamed, or whose plans or dataset description is missing or unreadable.
    """
    path = Path(path)
    if not path.is_dir():
        raise AutoSegError(
            f"{path}: model folder not found. Fix: pass the folder training wrote "
            "(<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>)."
        )
    configuration = model_configuration(path)
    _require_file(path / PLANS_FILE, "the plans the model was trained with")
    _require_file(path / DATASET_JSON, "the dataset's labels and channels")
    plans, origin = _load_plans(path / PLANS_FILE, configuration)
    if configuration not in plans.configurations:
        raise AutoSegError(
            f"{path / PLANS_FILE}: has no configuration {configuration!r} (available: "
            f"{', '.join(plans.configurations) or 'none'}). Fix: restore the plans.json that "
            "was written together with this model."
        )
    return ModelPlans(path, configuration, plans, load_dataset_json(path / DATASET_JSON), origin)


@dataclass(frozen=True)
class ModelFiles:
    """A model folder whose files are complete and readable (checkpoints not opened yet).

    Attributes:
        path: the model folder.
        plans: its plans (every configuration; ``configuration`` names the trained one).
        dataset: its dataset.json (labels, channels, file ending).
        configuration: the trained configuration, from the folder name.
        folds: the fold names to use ("0", "1", ..., or "all"), each with ``checkpoint_name``.
        checkpoint_name: the checkpoint file inside each fold folder.
        origin: who wrote the folder: "autoseg", or "nnunet" (an nnU-Net v2 model folder).
    """

    path: Path
    plans: Plans
    dataset: DatasetSpec
    configuration: str
    folds: tuple[str, ...]
    checkpoint_name: str = FINAL_CHECKPOINT
    origin: str = AUTOSEG_ORIGIN

    @property
    def config(self) -> ConfigurationPlan:
        return self.plans.configuration(self.configuration)

    @property
    def is_cascade(self) -> bool:
        return self.config.previous_stage is not None

    def checkpoint_file(self, fold: str) -> Path:
        return self.path / fold_folder_name(fold) / self.checkpoint_name


def open_model_files(
    path: Path, folds: Iterable[int | str] | None = None, checkpoint: str = FINAL_CHECKPOINT
) -> ModelFiles:
    """Check a model folder's files; ``folds`` None uses every numbered fold with the checkpoint.

    Raises AutoSegError (one line naming the file and the fix) for anything predict would refuse
    before reading a checkpoint.
    """
    model = read_model_plans(path)
    names = _select_folds(model.folder, folds, checkpoint)
    return ModelFiles(
        model.folder,
        model.plans,
        model.dataset,
        model.configuration,
        names,
        checkpoint,
        model.origin,
    )


def previous_stage_folder(model_path: Path, previous_stage: str) -> Path:
    """The model folder of the stage before a cascade stage (same trainer and plans), checked to
    exist; a kept version (``versions/<n>``) uses the current previous stage."""
    named = named_model_folder(model_path)
    trainer, plans, _ = split_model_folder_name(named.name)
    folder = named.parent / model_folder_name(trainer, plans, previous_stage)
    if not folder.is_dir():
        raise AutoSegError(
            f"{Path(model_path).name} is a cascade stage after {previous_stage!r}, but {folder} "
            f"does not exist. Fix: train {previous_stage} (the same folds), or pass "
            "-prev_stage_predictions FOLDER."
        )
    return folder
