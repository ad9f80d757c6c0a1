"""What a trained model folder offers, read from its JSON files only (never torch).

The Predict module must show labels, channels and the recommended configuration as soon as the
user picks a folder, inside Slicer's process, where torch must not load. Everything here therefore
comes from dataset.json, inference_information.json and which ``fold_<k>/checkpoint_final.pth``
files exist.

Two kinds of folder are accepted:

- a dataset's results folder ``<results>/DatasetXXX_Name`` holding model folders
  ``<trainer>__<plans>__<configuration>`` and, after ``autoseg find_best_configuration``,
  ``inference_information.json`` (then ``autoseg predict -m`` runs the recommended
  configuration(s), the ensemble and the post-processing in one call);
- one model folder ``<trainer>__<plans>__<configuration>`` (plans.json, dataset.json, fold_<k>/).

Labels: background (0) and the ``ignore`` label are left out: neither is ever predicted. For a
region-based dataset (a label is a list of classes, e.g. BraTS) the prediction file holds, per
voxel, the value ``regions_class_order`` assigns to the last region that covers it; so each
foreground region is listed under that written value. A segment then shows the voxels written with
its value (non-overlapping), which is exactly what the file says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from autoseg.dataset import DatasetSpec, load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.labels import IGNORE_NAME, LabelSpec
from autoseg.model_sharing import import_model

INFORMATION_FILE = "inference_information.json"
CHECKPOINT = "checkpoint_final.pth"
_MODEL_FILES = ("plans.json", "dataset.json")
_FOLD_PREFIX = "fold_"

ModelKind = Literal["dataset", "model"]


class ModelFolderError(AutoSegError, ValueError):
    """A folder that is not a usable model; the message names it and says what it should hold."""


@dataclass(frozen=True)
class ModelDescription:
    """Everything the Predict panel shows about a model before anything runs.

    Attributes:
        path: the folder the user chose (pass it to ``autoseg predict -m``, see ``predict_folder``).
        kind: "dataset" (a dataset's results folder) or "model" (one model folder).
        dataset_name: e.g. "Dataset004_Hippocampus".
        labels: foreground label name -> value in the prediction file (see the module docstring).
        channel_names: the input channels, in order (one volume each).
        file_ending: the image file ending the model reads and writes, e.g. ".nii.gz".
        configurations: configuration -> folds with a final checkpoint, e.g. {"3d_fullres": ("0",)}.
            Keyed by the model folder name instead when two folders share a configuration.
        recommended: the selection's choice, e.g. "3d_fullres" or "ensemble of 2d + 3d_fullres";
            None without inference_information.json.
        has_postprocessing: the recommended result has a post-processing file that predict applies.
        model_folders: the folder of each entry of ``configurations``.
        recommended_configurations: the configurations of ``recommended``, in selection order.
    """

    path: Path
    kind: ModelKind
    dataset_name: str
    labels: dict[str, int]
    channel_names: tuple[str, ...]
    file_ending: str
    configurations: dict[str, tuple[str, ...]]
    recommended: str | None = None
    has_postprocessing: bool = False
    model_folders: dict[str, Path] = field(default_factory=dict)
    recommended_configurations: tuple[str, ...] = ()

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def predict_folder(self) -> Path:
        """What to pass as ``-m``: the chosen folder, or its only model when nothing was selected.

        A dataset folder without inference_information.json but with a single trained model is
        unambiguous, so predicting with that model needs no selection run.
        """
        usable = [key for key, folds in self.configurations.items() if folds]
        if self.kind == "dataset" and self.recommended is None and len(usable) == 1:
            return self.model_folders[usable[0]]
        return self.path

    def summary(self) -> str:
        """A few lines for the module panel: dataset, labels, channels, what will run."""
        labels = ", ".join(self.labels) or "none"
        lines = [
            f"{self.dataset_name}: {len(self.labels)} label(s) ({labels})",
            f"Input: {', '.join(self.channel_names)} ({self.file_ending})",
        ]
        if self.recommended is not None:
            extra = " + post-processing" if self.has_postprocessing else ""
            lines.append(f"Recommended: {self.recommended}{extra}")
        trained = [f"{key} (folds {', '.join(f)})" for key, f in self.configurations.items() if f]
        lines.append(f"Trained: {'; '.join(trained) or 'nothing yet'}")
        return "\n".join(lines)


def describe_model(path: Path) -> ModelDescription:
    """Describe a dataset results folder or a single model folder; raises ModelFolderError."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelFolderError(
            f"{path}: folder not found. Choose a dataset's results folder "
            "(<results>/DatasetXXX_Name) or one of its model folders."
        )
    if _is_model_folder(path):
        return _describe_single(path)
    models = _model_folders(path)
    if models or (path / INFORMATION_FILE).is_file():
        return _describe_dataset(path, models)
    raise ModelFolderError(_not_a_model_message(path))


def import_model_zip(zip_path: Path, results_root: Path, *, overwrite: bool = False) -> Path:
    """Import a shared model zip into ``results_root``; returns the imported dataset folder.

    The zip is checked completely before anything is written (autoseg.model_sharing); existing
    files are replaced only with ``overwrite``.
    """
    try:
        models = import_model(Path(zip_path), Path(results_root), overwrite=overwrite)
    except AutoSegError as error:
        raise ModelFolderError(str(error)) from error
    return models[0].parent


# ----------------------------------------------------------------------------- folder detection


def _split_name(folder: Path) -> tuple[str, str, str] | None:
    parts = folder.name.split("__")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def _configuration_of(model: Path) -> str:
    """The configuration part of a (checked) model folder's name."""
    return model.name.split("__")[2]


def _is_model_folder(folder: Path) -> bool:
    has_files = all((folder / name).is_file() for name in _MODEL_FILES)
    return has_files and _split_name(folder) is not None


def _model_folders(folder: Path) -> list[Path]:
    """Model folders right below a dataset folder, sorted by name."""
    return sorted(child for child in folder.iterdir() if child.is_dir() and _is_model_folder(child))


def _not_a_model_message(path: Path) -> str:
    datasets = sorted(c.name for c in path.iterdir() if c.is_dir() and c.name.startswith("Dataset"))
    hint = ""
    if datasets:
        hint = f" It looks like a results root; choose one of: {', '.join(datasets[:10])}."
    elif path.name.startswith(_FOLD_PREFIX):
        hint = f" It looks like one fold; choose its parent folder {path.parent}."
    return (
        f"{path} is not a model folder. Expected a dataset's results folder (holding "
        f"{INFORMATION_FILE} and/or model folders named <trainer>__<plans>__<configuration>) or "
        "one model folder (holding plans.json, dataset.json and fold_<k>/checkpoint_final.pth)."
        + hint
    )


def _trained_folds(model: Path) -> tuple[str, ...]:
    """Folds (numbered first, then "all") whose folder holds the final checkpoint."""
    names = [
        child.name.removeprefix(_FOLD_PREFIX)
        for child in model.glob(f"{_FOLD_PREFIX}*")
        if (child / CHECKPOINT).is_file()
    ]
    valid = [n for n in names if n.isdigit() or n == "all"]
    return tuple(sorted(valid, key=lambda n: (0, int(n)) if n.isdigit() else (1, 0)))


# ----------------------------------------------------------------------------------- describing


def _load_dataset(model: Path) -> DatasetSpec:
    try:
        return load_dataset_json(model / "dataset.json")
    except AutoSegError as error:
        raise ModelFolderError(f"{model / 'dataset.json'} cannot be used: {error}") from error


def foreground_labels(labels: LabelSpec) -> dict[str, int]:
    """Label name -> value in a prediction file, without background and ignore (see above)."""
    entries = [(n, v) for n, v in labels.entries if n != IGNORE_NAME and v != 0]
    if not labels.has_regions:
        return {name: value for name, value in entries if isinstance(value, int)}
    order = labels.regions_class_order or ()
    return {name: int(value) for (name, _), value in zip(entries, order, strict=False)}


def _configuration_keys(models: list[Path]) -> dict[str, Path]:
    """Configuration name -> folder; the full folder name where two share a configuration."""
    configurations = [_configuration_of(m) for m in models]
    return {
        (cfg if configurations.count(cfg) == 1 else model.name): model
        for cfg, model in zip(configurations, models, strict=True)
    }


def _describe_single(model: Path) -> ModelDescription:
    dataset = _load_dataset(model)
    configuration = _configuration_of(model)
    folds = _trained_folds(model)
    if not folds:
        raise ModelFolderError(
            f"{model}: no fold_<k> folder holds {CHECKPOINT}, so there is nothing to predict "
            "with. Finish training at least one fold, or choose another model folder."
        )
    return ModelDescription(
        path=model,
        kind="model",
        dataset_name=model.parent.name,
        labels=foreground_labels(dataset.labels),
        channel_names=dataset.channel_names,
        file_ending=dataset.file_ending,
        configurations={configuration: folds},
        model_folders={configuration: model},
    )


@dataclass(frozen=True)
class _Selection:
    """The recommendation of inference_information.json (folders relative to the dataset)."""

    models: tuple[tuple[str, str], ...]  # (configuration, model folder)
    postprocessing_file: str | None


def _read_selection(folder: Path) -> _Selection | None:
    file = folder / INFORMATION_FILE
    if not file.is_file():
        return None
    problem = "selected_models is empty"
    try:
        best = json.loads(file.read_text(encoding="utf-8"))["best_model_or_ensemble"]
        models = tuple((str(m["configuration"]), str(m["folder"])) for m in best["selected_models"])
        pp_file = best.get("postprocessing_file")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as error:
        models, pp_file, problem = (), None, f"{type(error).__name__}: {error}"
    if not models:
        raise ModelFolderError(
            f"{file} is damaged (best_model_or_ensemble.selected_models unreadable: {problem}). "
            "Run `autoseg find_best_configuration` again, or import the model zip again."
        )
    return _Selection(models, str(pp_file) if pp_file else None)


def _recommendation(folder: Path, selection: _Selection) -> tuple[list[Path], bool]:
    """The recommended model folders (checked), and whether the post-processing file exists."""
    folders = [folder / relative for _, relative in selection.models]
    missing = [f for f in folders if not _is_model_folder(f)]
    if missing:
        raise ModelFolderError(
            f"{folder / INFORMATION_FILE} recommends {', '.join(f.name for f in missing)}, but "
            "that model folder (plans.json, dataset.json) is missing. Import or copy the complete "
            "model, or choose one model folder instead."
        )
    pp_file = selection.postprocessing_file
    return folders, pp_file is not None and (folder / pp_file).is_file()


def _recommended_name(configurations: tuple[str, ...]) -> str:
    if len(configurations) == 1:
        return configurations[0]
    return "ensemble of " + " + ".join(configurations)


def _describe_dataset(folder: Path, models: list[Path]) -> ModelDescription:
    selection = _read_selection(folder)
    recommended: tuple[str, ...] = ()
    has_pp = False
    source = models[0] if models else None
    if selection is not None:
        selected, has_pp = _recommendation(folder, selection)
        recommended, source = tuple(c for c, _ in selection.models), selected[0]
    if source is None:
        raise ModelFolderError(_not_a_model_message(folder))
    keys = _configuration_keys(models)
    configurations = {key: _trained_folds(model) for key, model in keys.items()}
    if not any(configurations.values()):
        raise ModelFolderError(
            f"{folder}: no model folder has a fold_<k>/{CHECKPOINT}, so there is nothing to "
            "predict with. Finish training at least one fold first."
        )
    dataset = _load_dataset(source)
    return ModelDescription(
        path=folder,
        kind="dataset",
        dataset_name=folder.name,
        labels=foreground_labels(dataset.labels),
        channel_names=dataset.channel_names,
        file_ending=dataset.file_ending,
        configurations=configurations,
        recommended=_recommended_name(recommended) if recommended else None,
        has_postprocessing=has_pp,
        model_folders=keys,
        recommended_configurations=recommended,
    )
