"""nnU-Net's model selection (find_best_configuration) read as AutoSeg's recommended inference.

``nnUNetv2_find_best_configuration`` writes ``<results>/DatasetXXX/inference_information.json``
(the folds and the chosen model, or two models to ensemble) and, next to its pickled
post-processing, a ``postprocessing.json`` naming the same rules. AutoSeg reads both JSON files and
never the pickle: loading one can run code. The paths nnU-Net records are absolute paths of the
machine that trained the models, so only their part below the dataset folder is used, and it must
stay inside that folder (the files may come from someone else's zip).

nnU-Net's only post-processing function keeps the largest connected component of a union of labels
or regions, which is AutoSeg's ``largest_per_region`` rule on the union of their label values (and
of all foreground labels, ``largest_foreground``); any other function is refused by name.
No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from autoseg.errors import AutoSegError
from autoseg.results_layout import (
    NNUNET_POSTPROCESSING_PICKLE,
    POSTPROCESSING_FILE,
    model_folder_name,
)

SELECTED = "selected_model_or_models"
KEEP_LARGEST = "remove_all_but_largest_component_from_segmentation"


def is_nnunet_information(data: Any) -> bool:
    """inference_information.json as nnU-Net writes it (AutoSeg's names its models differently)."""
    best = data.get("best_model_or_ensemble") if isinstance(data, dict) else None
    return isinstance(best, dict) and SELECTED in best


def _invalid(file: Path, problem: str) -> AutoSegError:
    return AutoSegError(
        f"{file}: {problem}. Fix: run nnUNetv2_find_best_configuration again, or pass one model "
        "folder with -m."
    )


def _model_folder(entry: Any, folder: Path, file: Path) -> Path:
    keys = ("trainer", "plans_identifier", "configuration")
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in keys):
        raise _invalid(
            file, f"a selected model {entry!r} lacks trainer/plans_identifier/configuration"
        )
    name = model_folder_name(*(entry[k] for k in keys))
    if "/" in name or "\\" in name or name.startswith("."):
        raise _invalid(file, f"the selected model {name!r} is not a folder name")
    path = folder / name
    if not path.is_dir():
        raise AutoSegError(
            f"the model folder {path} named in {file} is missing. Fix: copy or install that "
            "model (all its folds) into the dataset's results folder."
        )
    return path


def _below_dataset(text: Any, folder: Path, file: Path) -> Path:
    """The part of nnU-Net's absolute ``postprocessing_file`` below the dataset folder."""
    if not isinstance(text, str) or not text:
        raise _invalid(file, f"'postprocessing_file' is {text!r}")
    parts = (PureWindowsPath(text) if "\\" in text else PurePosixPath(text)).parts
    if folder.name not in parts:
        raise _invalid(file, f"the post-processing file {text!r} is not in a {folder.name} folder")
    below = parts[len(parts) - parts[::-1].index(folder.name) :]
    if not below or any(part in ("..", "") for part in below):
        raise _invalid(file, f"the post-processing file {text!r} leaves {folder.name}")
    return folder.joinpath(*below).with_name(POSTPROCESSING_FILE)


def nnunet_recommendation(
    data: dict[str, Any], folder: Path, file: Path
) -> tuple[str, tuple[Path, ...], tuple[str, ...], Path]:
    """(name, model folders, folds, post-processing JSON) of nnU-Net's inference_information.json."""
    best = data["best_model_or_ensemble"]
    selected = best.get(SELECTED)
    if not isinstance(selected, list) or not 1 <= len(selected) <= 2:
        raise _invalid(file, f"'{SELECTED}' must list one model or two to ensemble")
    models = tuple(_model_folder(entry, folder, file) for entry in selected)
    folds = data.get("folds")
    if not isinstance(folds, list) or not folds or not all(str(f).isdigit() for f in folds):
        raise _invalid(file, f"'folds' is {folds!r}, not a list of fold numbers")
    postprocessing = _below_dataset(best.get("postprocessing_file"), folder, file)
    if not postprocessing.is_file():
        raise AutoSegError(
            f"{postprocessing}: missing. nnU-Net writes it next to "
            f"{NNUNET_POSTPROCESSING_PICKLE}, which AutoSeg never reads (loading a pickle can run "
            f"code). Fix: copy the {POSTPROCESSING_FILE} of that folder too "
            "(nnUNetv2_find_best_configuration writes it)."
        )
    name = (
        "___".join(["ensemble", *(m.name for m in models)]) if len(models) > 1 else models[0].name
    )
    return name, models, tuple(str(int(f)) for f in dict.fromkeys(folds)), postprocessing


def _region(value: Any, source: str) -> list[int]:
    """The label values of nnU-Net's ``labels_or_regions`` (a label, a region, or a list of them)."""
    values = value if isinstance(value, list | tuple) else [value]
    flat: list[int] = []
    for item in values:
        flat += _region(item, source) if isinstance(item, list | tuple) else [item]
    if not flat or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in flat):
        raise AutoSegError(
            f"{source}: nnU-Net post-processing applies to {value!r}, not to foreground labels. "
            "Fix: run nnUNetv2_find_best_configuration again."
        )
    return sorted(set(flat))


def postprocessing_json_from_nnunet(data: dict[str, Any], source: str) -> dict[str, Any]:
    """nnU-Net's postprocessing.json as AutoSeg's (rules, scores before and after)."""
    functions, kwargs = data.get("postprocessing_fns"), data.get("postprocessing_kwargs")
    if (
        not isinstance(functions, list)
        or not isinstance(kwargs, list)
        or len(functions) != len(kwargs)
    ):
        raise AutoSegError(
            f"{source}: nnU-Net post-processing file without matching 'postprocessing_fns' and "
            "'postprocessing_kwargs'. Fix: run nnUNetv2_find_best_configuration again."
        )
    rules = []
    for function, arguments in zip(functions, kwargs, strict=True):
        if function != KEEP_LARGEST or not isinstance(arguments, dict):
            raise AutoSegError(
                f"{source}: nnU-Net post-processing function {function!r} is not one AutoSeg "
                f"reproduces (only {KEEP_LARGEST}). Fix: predict without post-processing (-m "
                "with one model folder) or remove that step from the file."
            )
        rules.append(
            {
                "kind": "largest_per_region",
                "region": _region(arguments.get("labels_or_regions"), source),
            }
        )
    scores = [data.get(key, {}) for key in ("input_folder", "postprocessed")]
    return {"rules": rules, "before": scores[0], "after": scores[1]}


def postprocessing_json_to_nnunet(
    data: dict[str, Any], foreground_labels: Sequence[int]
) -> dict[str, Any]:
    """AutoSeg's postprocessing.json (rules, scores before and after) in nnU-Net's schema, the
    reverse of :func:`postprocessing_json_from_nnunet`: every rule is nnU-Net's keep-largest
    function, on all foreground labels (``largest_foreground``) or on one label or region."""
    functions, kwargs = [], []
    for rule in data.get("rules", []):
        region = rule.get("region")
        if rule.get("kind") == "largest_foreground" or region is None:
            target: int | list[int] = list(foreground_labels)
        else:
            target = region[0] if len(region) == 1 else list(region)
        functions.append(KEEP_LARGEST)
        kwargs.append({"labels_or_regions": target})
    return {
        "input_folder": data.get("before", {}),
        "postprocessed": data.get("after", {}),
        "postprocessing_fns": functions,
        "postprocessing_kwargs": kwargs,
    }
