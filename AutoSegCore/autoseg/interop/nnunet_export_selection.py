"""AutoSeg's model selection (find_best_configuration) written in nnU-Net's schema for an export.

An nnU-Net results folder keeps the choice in ``inference_information.json`` and each ensemble's
post-processing in ``ensembles/ensemble___<m1>___<m2>___<folds>/postprocessing.json``. In the
export, AutoSeg's model folders are renamed (trainer ``nnUNetTrainer``), so every model name in
those files is renamed the same way; the files are written only when every model they name is in
the zip. The chosen post-processing is named by its JSON (nnU-Net's key names a pickle, which an
export never holds; AutoSeg's importer reads the JSON beside that name either way). No torch here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autoseg.interop.nnunet_selection import SELECTED
from autoseg.results_layout import ENSEMBLES_DIR, model_folder_name, split_model_folder_name

ENSEMBLE_SEPARATOR = "___"  # model_selection.ensemble_folder_name: ensemble___<m1>___<m2>___<folds>


def renamed_ensemble(name: str, names: Mapping[str, str]) -> str | None:
    """The ensemble folder's name with its models renamed; None when one is not exported."""
    parts = name.split(ENSEMBLE_SEPARATOR)
    models = parts[1:-1]
    if len(parts) < 4 or any(model not in names for model in models):
        return None
    return ENSEMBLE_SEPARATOR.join([parts[0], *(names[m] for m in models), parts[-1]])


def _renamed_result(name: str, names: Mapping[str, str]) -> str | None:
    return names.get(name) or renamed_ensemble(name, names)


def _renamed_path(path: str, names: Mapping[str, str]) -> str | None:
    """A path relative to the dataset folder, its model or ensemble folder renamed."""
    first, _, rest = str(path).partition("/")
    if first == ENSEMBLES_DIR:
        ensemble, _, below = rest.partition("/")
        folder = renamed_ensemble(ensemble, names)
        return None if folder is None else f"{first}/{folder}/{below}"
    return None if first not in names else f"{names[first]}/{rest}"


def _model_entry(entry: Mapping[str, Any], names: Mapping[str, str], plans_key: str) -> dict | None:
    folder = names.get(str(entry.get("folder", "")))
    if folder is None:
        return None
    trainer, plans_name, configuration = split_model_folder_name(folder)
    return {"configuration": configuration, plans_key: plans_name, "trainer": trainer}


def information_to_nnunet(
    data: Mapping[str, Any], names: Mapping[str, str], dataset_name: str, folds: Sequence[str]
) -> dict[str, Any] | None:
    """AutoSeg's inference_information.json in nnU-Net's schema, or None when the chosen models
    are not all exported (or the file is not AutoSeg's)."""
    best = data.get("best_model_or_ensemble")
    if not isinstance(best, dict) or not isinstance(best.get("selected_models"), list):
        return None
    selected = [_model_entry(m, names, "plans_identifier") for m in best["selected_models"]]
    postprocessing = _renamed_path(best.get("postprocessing_file", ""), names)
    if not selected or None in selected or postprocessing is None:
        return None
    considered = [_model_entry(m, names, "plans") for m in data.get("considered_models", [])]
    results = {
        _renamed_result(name, names): score for name, score in data.get("all_results", {}).items()
    }
    return {
        "all_results": {name: score for name, score in results.items() if name is not None},
        "best_model_or_ensemble": {
            "postprocessing_file": f"{dataset_name}/{postprocessing}",
            "result_on_crossval_pre_pp": best.get("result_on_crossval_pre_pp"),
            "result_on_crossval_post_pp": best.get("result_on_crossval_post_pp"),
            SELECTED: selected,
            "some_plans_file": f"{dataset_name}/{_folder_of(selected[0])}/plans.json",
        },
        "considered_models": [entry for entry in considered if entry is not None],
        "dataset_name_or_id": dataset_name,
        "ensembling_allowed": bool(data.get("ensembling_allowed", True)),
        "folds": [int(f) if str(f).isdigit() else f for f in (data.get("folds") or folds)],
    }


def _folder_of(entry: Mapping[str, str]) -> str:
    return model_folder_name(entry["trainer"], entry["plans_identifier"], entry["configuration"])
