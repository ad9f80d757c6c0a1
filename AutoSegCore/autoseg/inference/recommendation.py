"""The recommended inference of a dataset, as read from its results folder.

``autoseg find_best_configuration`` (or nnUNetv2_find_best_configuration) writes
``inference_information.json`` into the dataset's results folder: the best single model or
ensemble of two, the cross-validation folds and the post-processing file. Reading and checking that
choice is kept apart from running it (:mod:`autoseg.inference.recommended`) because the Slicer
Predict panel reads it in Slicer's own process to describe a folder before anything runs, where
neither torch nor scipy may be imported: this module needs only the standard library and the
results layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from autoseg.errors import AutoSegError
from autoseg.interop.nnunet_selection import is_nnunet_information, nnunet_recommendation
from autoseg.results_layout import (
    INFORMATION_FILE,
    PLANS_FILE,
    configuration_of,
    is_model_folder_name,
)


@dataclass(frozen=True)
class Recommendation:
    """The chosen model(s), their cross-validation folds and post-processing (None: no rules)."""

    name: str
    model_dirs: tuple[Path, ...]  # one model, or two to ensemble
    folds: tuple[str, ...]
    postprocessing_file: Path | None
    results_dir: Path

    @property
    def configurations(self) -> tuple[str, ...]:
        """From the model folder names ``<trainer>__<plans>__<configuration>``."""
        return tuple(configuration_of(folder.name) for folder in self.model_dirs)

    @property
    def is_ensemble(self) -> bool:
        return len(self.model_dirs) > 1

    @property
    def information_file(self) -> Path:
        return self.results_dir / INFORMATION_FILE

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary (for predict_args.json)."""
        pp = self.postprocessing_file
        return {
            "name": self.name,
            "model_folders": [str(folder) for folder in self.model_dirs],
            "folds": list(self.folds),
            "postprocessing_file": None if pp is None else str(pp),
            "information_file": str(self.information_file),
        }


def is_dataset_results_folder(folder: Path) -> bool:
    """Whether ``folder`` is a dataset's results folder (it holds inference_information.json or
    model folders) rather than one model folder, which holds plans.json."""
    folder = Path(folder)
    if (folder / INFORMATION_FILE).is_file():
        return True
    if not folder.is_dir() or (folder / PLANS_FILE).is_file():
        return False
    return any(child.is_dir() and is_model_folder_name(child.name) for child in folder.iterdir())


def _dataset_name(folder: Path) -> str:
    return folder.resolve().name


def _invalid(file: Path, problem: str) -> AutoSegError:
    return AutoSegError(
        f"{file}: {problem}. Fix: run autoseg find_best_configuration "
        f"{_dataset_name(file.parent)} again to rewrite it."
    )


def _load(file: Path) -> dict[str, Any]:
    if not file.is_file():
        folder = file.parent
        raise AutoSegError(
            f"{file}: not found, so no configuration was chosen for {_dataset_name(folder)}. "
            f"Fix: run autoseg find_best_configuration {_dataset_name(folder)} first, or pass "
            f"one model folder ({folder}/<trainer>__<plans>__<configuration>)."
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _invalid(file, f"cannot be read as JSON ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("best_model_or_ensemble"), dict):
        raise _invalid(file, "has no 'best_model_or_ensemble' object")
    return data


def _folds(data: dict[str, Any], file: Path) -> tuple[str, ...]:
    folds = data.get("folds")
    valid = isinstance(folds, list) and bool(folds)
    if not valid or not all(isinstance(f, int) and not isinstance(f, bool) for f in folds):
        raise _invalid(file, f"'folds' is {folds!r}, not a list of fold numbers")
    return tuple(str(f) for f in dict.fromkeys(folds))


def _inside(folder: Path, file: Path, text: Any, what: str) -> Path:
    """``folder / text`` for a relative path that stays inside ``folder`` (the file may come from
    a shared zip, so it must not point anywhere else)."""
    if not isinstance(text, str) or not text or "\\" in text or ":" in text:  # ":" a drive
        raise _invalid(file, f"the {what} {text!r} is not a relative path inside {folder}")
    relative = PurePosixPath(text)
    if relative.is_absolute() or ".." in relative.parts:
        raise _invalid(file, f"the {what} {text!r} is not a relative path inside {folder}")
    return folder / relative


def _model_dirs(best: dict[str, Any], folder: Path, file: Path) -> tuple[Path, ...]:
    models = best.get("selected_models")
    if not isinstance(models, list) or not 1 <= len(models) <= 2:
        raise _invalid(file, "'selected_models' must list one model or two to ensemble")
    texts = [model.get("folder") if isinstance(model, dict) else None for model in models]
    dirs = tuple(_inside(folder, file, text, "model folder") for text in texts)
    if len({configuration_of(d.name) for d in dirs}) != len(dirs):
        raise _invalid(file, f"'selected_models' names one configuration twice ({texts})")
    for model in dirs:
        if not model.is_dir():
            raise AutoSegError(
                f"the model folder {model} named in {file} is missing. Fix: train it, import the "
                f"model zip that holds it, or run autoseg find_best_configuration "
                f"{_dataset_name(folder)} again with the models that exist."
            )
    return dirs


def _postprocessing_file(best: dict[str, Any], folder: Path, file: Path) -> Path | None:
    text = best.get("postprocessing_file")
    if text is None:
        return None
    path = _inside(folder, file, text, "post-processing file")
    if not path.is_file():
        raise AutoSegError(
            f"the post-processing file {path} named in {file} is missing. Fix: run autoseg "
            f"find_best_configuration {_dataset_name(folder)} again, or export the model again "
            "with this AutoSeg version (it includes that file)."
        )
    return path


def read_recommendation(results_dataset_dir: Path) -> Recommendation:
    """Read and check ``<results_dataset_dir>/inference_information.json``; every named folder and
    file must exist (one-line AutoSegError otherwise)."""
    folder = Path(results_dataset_dir)
    file = folder / INFORMATION_FILE
    data = _load(file)
    if is_nnunet_information(data):  # written by nnUNetv2_find_best_configuration
        return Recommendation(*nnunet_recommendation(data, folder, file), folder)
    best = data["best_model_or_ensemble"]
    name = best.get("name")
    if not isinstance(name, str) or not name:
        raise _invalid(file, "the best model or ensemble has no 'name'")
    folds = _folds(data, file)
    models = _model_dirs(best, folder, file)
    return Recommendation(name, models, folds, _postprocessing_file(best, folder, file), folder)
