"""Names of the results layout shared by training, prediction and selection (one definition).

A trained model lives in ``<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>``, as in
nnU-Net, so both tools find each other's models by the same rule. Kept in the data layer (no torch)
because training, inference and the Slicer side all need it, and inference never imports training.

Versions: training a fold that already holds a final model first keeps that model as
``<model folder>/versions/<n>/`` (n = 1, 2, ...), a complete model folder of its own (plans.json,
dataset.json, its fold folders, ``version.json`` saying when and why it was kept), so retraining never
overwrites a model and ``autoseg predict -m <model folder>/versions/<n>`` still runs the old one. Its
name is a number, so the trainer, plans and configuration are read from the model folder above it.
"""

from __future__ import annotations

from pathlib import Path

MODEL_FOLDER_SEPARATOR = "__"
# Inside a fold folder: the weights a finished training leaves (what predict uses by default).
FINAL_CHECKPOINT = "checkpoint_final.pth"
VERSIONS_FOLDER = "versions"
# Inside a version folder: when it was kept, which fold's retraining kept it, by which command.
VERSION_INFO_FILE = "version.json"
# Inside a fold folder: the case ids the fold was trained and validated on (what a later model of
# the dataset compares against to find the cases added since).
FOLD_CASES_FILE = "training_cases.json"


def model_folder_name(trainer: str, plans_name: str, configuration: str) -> str:
    """``<trainer>__<plans>__<configuration>``."""
    return MODEL_FOLDER_SEPARATOR.join((trainer, plans_name, configuration))


def split_model_folder_name(name: str) -> tuple[str, str, str]:
    """(trainer, plans, configuration) of a model folder's name; ValueError for another name."""
    trainer, plans_name, configuration = name.split(MODEL_FOLDER_SEPARATOR)
    return trainer, plans_name, configuration


def version_folder(model_dir: Path, number: int) -> Path:
    """``<model folder>/versions/<number>``."""
    return Path(model_dir) / VERSIONS_FOLDER / str(number)


def version_numbers(model_dir: Path) -> list[int]:
    """The numbers of the versions kept in a model folder, ascending (none: [])."""
    folder = Path(model_dir) / VERSIONS_FOLDER
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def is_version_folder(path: Path) -> bool:
    """Whether ``path`` is ``<model folder>/versions/<n>`` (judged by the names only)."""
    path = Path(path)
    return path.name.isdigit() and path.parent.name == VERSIONS_FOLDER


def named_model_folder(path: Path) -> Path:
    """The folder whose name says trainer, plans and configuration: ``path`` itself, or for a
    version folder the model folder it was kept in."""
    path = Path(path)
    return path.parent.parent if is_version_folder(path) else path
