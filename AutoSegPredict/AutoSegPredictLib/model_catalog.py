"""What a trained model offers, judged by the engine's own torch-free rules before anything runs.

The Predict module must show labels, channels and what will run as soon as the user picks a
model, inside Slicer's process, where torch must not load; and it must refuse a folder that
``autoseg predict -m`` would refuse, instead of failing only after the engine has started. So the
folder is checked with the engine's rules themselves (one rule, one definition), all torch-free:

- ``autoseg.inference.recommendation.is_dataset_results_folder`` tells a dataset's results folder
  from one model folder, and ``read_recommendation`` reads ``inference_information.json``, as
  written by ``autoseg find_best_configuration`` or by ``nnUNetv2_find_best_configuration`` (then
  with the ``postprocessing.json`` nnU-Net writes beside its pickle);
- ``autoseg.inference.model_files.open_model_files`` checks a model folder (AutoSeg's or nnU-Net
  v2's ``<Trainer>__<Plans>__<configuration>``, or a kept version ``versions/<n>``): its name,
  plans.json (nnU-Net's translated, settings AutoSeg cannot reproduce refused), dataset.json and
  the folds holding ``checkpoint_final.pth``; a cascade stage also needs its previous stage.

Only the checkpoints themselves are left to the engine (reading them needs torch).

Model zips (``autoseg export_model`` or ``nnUNetv2_export_model_to_zip``) are described from their
member names after the engine's safety checks (``autoseg.model_zip_layout``) and imported with the
engine's ``import_model``, which checks everything again before writing anything.

Labels: background (0) and the ``ignore`` label are left out: neither is ever predicted. For a
region-based dataset (a label is a list of classes, e.g. BraTS) the prediction file holds, per
voxel, the value ``regions_class_order`` assigns to the last region that covers it; so each
foreground region is listed under that written value. A segment then shows the voxels written with
its value (non-overlapping), which is exactly what the file says.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from autoseg.errors import AutoSegError
from autoseg.inference.model_files import (
    AUTOSEG_ORIGIN,
    ModelFiles,
    open_model_files,
    previous_stage_folder,
)
from autoseg.inference.recommendation import is_dataset_results_folder, read_recommendation
from autoseg.interop.nnunet_plans import NNUNET_ORIGIN
from autoseg.labels import IGNORE_NAME, LabelSpec, parse_labels
from autoseg.model_listing import ModelInfo, list_models
from autoseg.model_sharing import import_model
from autoseg.model_zip_layout import archive_problems
from autoseg.results_layout import (
    FINAL_CHECKPOINT,
    FOLD_PREFIX,
    INFORMATION_FILE,
    PLANS_FILE,
    is_version_folder,
    named_model_folder,
    split_model_folder_name,
)

# dataset.json read from a zip before import: a real one is a few kB.
_MAX_DATASET_JSON_BYTES = 1 << 20
TOOL_NAMES = {AUTOSEG_ORIGIN: "AutoSeg", NNUNET_ORIGIN: "nnU-Net v2"}

ModelKind = Literal["dataset", "model"]


class ModelFolderError(AutoSegError, ValueError):
    """A folder that is not a usable model; the message names it and says what it should hold."""


@dataclass(frozen=True)
class ModelDescription:
    """Everything the Predict panel shows about a model before anything runs.

    Attributes:
        path: the folder the user chose.
        kind: "dataset" (a dataset's results folder) or "model" (one model folder or version).
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
        predict_folder: what to pass to ``autoseg predict -m``.
        origin: who trained the model(s): "autoseg" or "nnunet".
        recommended_folds: the cross-validation folds the recommendation averages.
        unusable: model folders of a dataset that predict would refuse, with the reason.
        training_dataset: the dataset the plans were made for (its raw folder's name), where a
            corrected prediction is added as a training case.
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
    predict_folder: Path = Path()
    origin: str = AUTOSEG_ORIGIN
    recommended_folds: tuple[str, ...] = ()
    unusable: dict[str, str] = field(default_factory=dict)
    training_dataset: str = ""

    @property
    def num_channels(self) -> int:
        return len(self.channel_names)

    @property
    def tool(self) -> str:
        return TOOL_NAMES.get(self.origin, self.origin)

    def summary(self) -> str:
        """A few lines for the module panel: dataset, labels, channels, what will run."""
        labels = ", ".join(self.labels) or "none"
        lines = [
            f"{self.dataset_name} ({self.tool}): {len(self.labels)} label(s) ({labels})",
            f"Input: {', '.join(self.channel_names)} ({self.file_ending})",
        ]
        if self.recommended is not None:
            folds = f", folds {', '.join(self.recommended_folds)}" if self.recommended_folds else ""
            extra = " + post-processing" if self.has_postprocessing else ""
            lines.append(f"Recommended: {self.recommended}{folds}{extra}")
        trained = [f"{key} (folds {', '.join(f)})" for key, f in self.configurations.items() if f]
        lines.append(f"Trained: {'; '.join(trained) or 'nothing yet'}")
        lines += [f"Not usable: {name}: {why}" for name, why in self.unusable.items()]
        return "\n".join(lines)


def describe_model(path: Path) -> ModelDescription:
    """Describe a dataset results folder or a single model folder; raises ModelFolderError for
    anything ``autoseg predict -m`` would refuse before reading a checkpoint."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelFolderError(
            f"{path}: folder not found. Choose a dataset's results folder "
            "(<results>/DatasetXXX_Name) or one of its model folders."
        )
    if is_dataset_results_folder(path):
        return _describe_dataset(path)
    if not _named_like_a_model(path):
        raise ModelFolderError(_not_a_model_message(path))
    return _describe_single(path)


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


# ----------------------------------------------------------------------------- model folders


def _named_like_a_model(folder: Path) -> bool:
    try:
        return all(split_model_folder_name(named_model_folder(folder).name))
    except ValueError:
        return False


def _not_a_model_message(path: Path) -> str:
    """A folder neither kind of model folder: say what was expected and where to go instead."""
    hint = ""
    datasets = sorted(c.name for c in path.iterdir() if c.is_dir() and c.name.startswith("Dataset"))
    if path.name.startswith(FOLD_PREFIX) and _named_like_a_model(path.parent):
        hint = f" It looks like one fold; choose its parent folder {path.parent}."
    elif datasets:
        hint = f" It looks like a results root; choose one of: {', '.join(datasets[:10])}."
    return (
        f"{path} is not a model folder. Expected a dataset's results folder (holding "
        f"{INFORMATION_FILE} and/or model folders named <trainer>__<plans>__<configuration>) or "
        f"one model folder (holding plans.json, dataset.json and fold_<k>/{FINAL_CHECKPOINT})."
        + hint
    )


def _checked_model(path: Path, folds: tuple[str, ...] | None = None) -> ModelFiles:
    """The engine's check of a model folder, plus a cascade stage's previous stage."""
    try:
        files = open_model_files(path, folds)
        if files.is_cascade:
            stage = str(files.config.previous_stage)
            open_model_files(previous_stage_folder(path, stage), files.folds)
    except AutoSegError as error:
        raise ModelFolderError(str(error)) from error
    return files


def foreground_labels(labels: LabelSpec) -> dict[str, int]:
    """Label name -> value in a prediction file, without background and ignore (see above)."""
    entries = [(n, v) for n, v in labels.entries if n != IGNORE_NAME and v != 0]
    if not labels.has_regions:
        return {name: value for name, value in entries if isinstance(value, int)}
    order = labels.regions_class_order or ()
    return {name: int(value) for (name, _), value in zip(entries, order, strict=False)}


def _dataset_name(model: Path) -> str:
    return named_model_folder(model).parent.name


def _configuration_keys(models: list[ModelFiles]) -> dict[str, ModelFiles]:
    """Configuration name -> model; the full folder name where two share a configuration."""
    names = [m.configuration for m in models]
    return {
        (m.configuration if names.count(m.configuration) == 1 else m.path.name): m for m in models
    }


def _describe_single(path: Path) -> ModelDescription:
    files = _checked_model(path)
    name = (
        files.configuration
        if not is_version_folder(path)
        else f"{files.configuration} v{path.name}"
    )
    return ModelDescription(
        path=path,
        kind="model",
        dataset_name=_dataset_name(path),
        labels=foreground_labels(files.dataset.labels),
        channel_names=files.dataset.channel_names,
        file_ending=files.dataset.file_ending,
        configurations={name: files.folds},
        model_folders={name: path},
        predict_folder=path,
        origin=files.origin,
        training_dataset=files.plans.dataset_name,
    )


# ----------------------------------------------------------------------------- dataset folders


def _first_sentence(message: str) -> str:
    first = message.split(". ", 1)[0]
    return first if first.endswith(".") else f"{first}."


def _usable_models(folder: Path) -> tuple[list[ModelFiles], dict[str, str]]:
    """The model folders right below a dataset folder that predict accepts, and the others with
    the first sentence of their refusal."""
    usable, refused = [], {}
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and _named_like_a_model(p)):
        try:
            usable.append(_checked_model(child))
        except ModelFolderError as error:
            refused[child.name] = _first_sentence(str(error).removeprefix(f"{child}: "))
    return usable, refused


def _no_choice_error(folder: Path, models: list[ModelFiles], refused: dict[str, str]) -> str:
    if not models:
        reasons = "; ".join(f"{name}: {why}" for name, why in refused.items())
        return (
            f"{folder}: no model folder here can predict ({reasons or 'none found'}). Finish "
            "training at least one fold, or choose another folder."
        )
    names = ", ".join(m.path.name for m in models)
    return (
        f"{folder} holds {len(models)} models ({names}) but no {INFORMATION_FILE}, so predict "
        "cannot know which one to run. Choose one of its model folders, or run "
        f"`autoseg find_best_configuration {folder.name}` (nnUNetv2_find_best_configuration for "
        "nnU-Net models) to choose."
    )


def _recommended(folder: Path) -> tuple[list[ModelFiles], tuple[str, ...], bool]:
    """The recommended models (checked with the recommended folds), folds, post-processing."""
    try:
        recommendation = read_recommendation(folder)
    except AutoSegError as error:
        raise ModelFolderError(str(error)) from error
    chosen = [_checked_model(model, recommendation.folds) for model in recommendation.model_dirs]
    return chosen, recommendation.folds, recommendation.postprocessing_file is not None


def _describe_dataset(folder: Path) -> ModelDescription:
    models, refused = _usable_models(folder)
    chosen, folds, has_pp = [], (), False
    if (folder / INFORMATION_FILE).is_file():
        chosen, folds, has_pp = _recommended(folder)
    elif len(models) != 1:
        raise ModelFolderError(_no_choice_error(folder, models, refused))
    source = chosen[0] if chosen else models[0]
    keys = _configuration_keys(models)
    recommended = tuple(m.configuration for m in chosen)
    if len(recommended) > 1:
        name: str | None = "ensemble of " + " + ".join(recommended)
    else:
        name = recommended[0] if recommended else None
    return ModelDescription(
        path=folder,
        kind="dataset",
        dataset_name=folder.name,
        labels=foreground_labels(source.dataset.labels),
        channel_names=source.dataset.channel_names,
        file_ending=source.dataset.file_ending,
        configurations={key: model.folds for key, model in keys.items()},
        recommended=name,
        has_postprocessing=has_pp,
        model_folders={key: model.path for key, model in keys.items()},
        recommended_configurations=recommended,
        predict_folder=folder if chosen else source.path,
        origin=source.origin,
        recommended_folds=folds,
        unusable=refused,
        training_dataset=source.plans.dataset_name,
    )


# ---------------------------------------------------------------------------------- model list


def _model_label(model: ModelInfo) -> str:
    version = "" if model.version is None else f" (kept version {model.version})"
    folds = ", ".join(f.fold for f in model.folds)
    tool = TOOL_NAMES.get(model.origin, model.origin)
    name = f"{model.trainer}__{model.plans}__{model.configuration}"
    return f"{model.dataset} / {name}{version}: {tool}, folds {folds}"


def found_models(results_roots: list[Path | None]) -> list[tuple[str, Path]]:
    """(label, folder) of every model in the results roots, for the panel's model list.

    Per dataset, its results folder first (what ``predict -m`` runs with the recommendation),
    then each model folder and kept version with a trained fold, as ``autoseg list_models``
    finds them (``autoseg.model_listing``, torch-free). A root listed twice, missing or
    unreadable is skipped: the list is a convenience, the path field takes any folder.
    """
    entries: list[tuple[str, Path]] = []
    seen: set[Path] = set()
    for root in results_roots:
        if root is None or not Path(root).is_dir() or Path(root).resolve() in seen:
            continue
        seen.add(Path(root).resolve())
        try:
            models = [m for m in list_models(Path(root)) if m.folds]
        except (AutoSegError, OSError):
            continue
        for dataset in dict.fromkeys(m.dataset for m in models):
            folder = Path(root).absolute() / dataset
            chosen = " (recommended)" if (folder / INFORMATION_FILE).is_file() else ""
            entries.append((f"{dataset}{chosen}", folder))
            entries += [(_model_label(m), Path(m.path)) for m in models if m.dataset == dataset]
    return entries


# ---------------------------------------------------------------------------------------- zips


@dataclass(frozen=True)
class ZipDescription:
    """What a model zip holds, from its member names (nothing extracted)."""

    path: Path
    dataset_name: str
    models: dict[str, tuple[str, ...]]  # model folder name -> folds with the final checkpoint
    has_selection: bool
    labels: dict[str, int]

    def summary(self) -> str:
        models = "; ".join(f"{m} (folds {', '.join(f) or 'none'})" for m, f in self.models.items())
        lines = [
            f"{self.path.name}: {self.dataset_name}",
            f"Models: {models}",
            f"Labels: {', '.join(self.labels) or 'unknown'}",
        ]
        if self.has_selection:
            lines.append(f"With {INFORMATION_FILE}: predicts the recommended configuration(s).")
        return "\n".join(lines)


def _zip_labels(archive: zipfile.ZipFile, member: str) -> dict[str, int]:
    info = archive.getinfo(member)
    if info.file_size > _MAX_DATASET_JSON_BYTES:
        return {}
    try:
        data = json.loads(archive.read(member).decode("utf-8"))
        labels, problems = parse_labels(data["labels"], data.get("regions_class_order"), member)
    except (ValueError, KeyError, TypeError, zipfile.BadZipFile):
        return {}  # the model folder's check after the import says what is wrong
    if labels is None or any(p.is_error for p in problems):
        return {}
    return foreground_labels(labels)


def _zip_models(names: list[str], top: str) -> dict[str, tuple[str, ...]]:
    parts = [name.split("/") for name in names]
    models = sorted({p[1] for p in parts if len(p) == 3 and p[0] == top and p[2] == PLANS_FILE})
    return {
        model: tuple(
            sorted(
                p[2].removeprefix(FOLD_PREFIX)
                for p in parts
                if len(p) == 4 and p[1] == model and p[3] == FINAL_CHECKPOINT
            )
        )
        for model in models
    }


def describe_zip(zip_path: Path, results_root: Path) -> ZipDescription:
    """Describe a model zip after the engine's member checks; ModelFolderError for a zip that
    import would refuse for its members (existing targets are left to the import)."""
    zip_path = Path(zip_path)
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = archive.infolist()
            problems, top = archive_problems(members, Path(results_root).resolve())
            names = [m.filename for m in members if not m.is_dir()]
            models = _zip_models(names, top)
            labels = (
                _zip_labels(archive, f"{top}/{next(iter(models))}/dataset.json") if models else {}
            )
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ModelFolderError(f"{zip_path} is not a readable zip file ({error}).") from error
    if problems or not models:
        first = (
            problems[0] if problems else f"no {top}/<trainer>__<plans>__<configuration>/plans.json"
        )
        raise ModelFolderError(f"{zip_path} is not a model zip that can be imported: {first}.")
    has_selection = f"{top}/{INFORMATION_FILE}" in names
    return ZipDescription(zip_path, top, models, has_selection, labels)
