"""Names of the results layout shared by training, prediction and selection (one definition).

AutoSeg writes nnU-Net v2's results layout, so both tools find each other's models by the same rules
and this one module knows both:

    <results>/DatasetXXX_Name/
        <trainer>__<plans>__<configuration>/     a model folder (model_folder_name)
            plans.json  dataset.json  dataset_fingerprint.json
            fold_<k>/ or fold_all/               (fold_folder_name)
                checkpoint_final.pth  checkpoint_best.pth  checkpoint_latest.pth
                validation/summary.json
            crossval_results_folds_<k>_<l>/      (crossval_folder_name) summary.json and the
                postprocessing.json chosen there (nnU-Net also writes postprocessing.pkl there,
                which AutoSeg never reads)
        ensembles/<pair>/                        AutoSeg's evaluated ensembles (nnU-Net: ensembles/)
        inference_information.json               find_best_configuration's choice (both tools)
        inference_instructions.txt               the commands that run it

Kept in the data layer (no torch) because training, inference and the Slicer side all need it, and
inference never imports training.

Versions: training a fold that already holds a final model first keeps that model as
``<model folder>/versions/<n>/`` (n = 1, 2, ...), a complete model folder of its own (plans.json,
dataset.json, its fold folders, ``version.json`` saying when and why it was kept), so retraining never
overwrites a model and ``autoseg predict -m <model folder>/versions/<n>`` still runs the old one. Its
name is a number, so the trainer, plans and configuration are read from the model folder above it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from autoseg.dataset import DATASET_JSON

MODEL_FOLDER_SEPARATOR = "__"
MODEL_FOLDER_PATTERN = "*__*__*"  # glob for the model folders of a dataset's results folder
# Inside a model folder, besides DATASET_JSON (the dataset's own dataset.json, copied).
PLANS_FILE = "plans.json"
# The dataset fingerprint: written to the preprocessed dataset folder, copied into a model folder.
FINGERPRINT_FILE = "dataset_fingerprint.json"
MODEL_FILES = (PLANS_FILE, DATASET_JSON)  # what every model folder holds (and a run needs)
FOLD_PREFIX = "fold_"
ALL_FOLDS = "all"  # fold_all: trained on every case
# Inside a fold folder: the weights a finished training leaves (what predict uses by default),
# the best by validation pseudo-Dice, and the one written during training (resume, stop).
FINAL_CHECKPOINT = "checkpoint_final.pth"
BEST_CHECKPOINT = "checkpoint_best.pth"
LATEST_CHECKPOINT = "checkpoint_latest.pth"
# Model selection, in a dataset's results folder (AutoSeg and nnU-Net use the same names).
INFORMATION_FILE = "inference_information.json"
INSTRUCTIONS_FILE = "inference_instructions.txt"
CROSSVAL_PREFIX = "crossval_results_folds_"
CROSSVAL_PATTERN = f"{CROSSVAL_PREFIX}*"
ENSEMBLES_DIR = "ensembles"
POSTPROCESSING_FILE = "postprocessing.json"
NNUNET_POSTPROCESSING_PICKLE = "postprocessing.pkl"  # nnU-Net's, beside its JSON; never read
VERSIONS_FOLDER = "versions"
# Inside a version folder: when it was kept, which fold's retraining kept it, by which command.
VERSION_INFO_FILE = "version.json"
# Inside a fold folder: the case ids the fold was trained and validated on (what a later model of
# the dataset compares against to find the cases added since).
FOLD_CASES_FILE = "training_cases.json"
# Inside a fold's validation folder after a warm-started run: the new model against the previous
# one on the same cases (training/comparison.py writes it; the Slicer Train panel shows it).
COMPARISON_FILE = "comparison.json"


def model_folder_name(trainer: str, plans_name: str, configuration: str) -> str:
    """``<trainer>__<plans>__<configuration>``."""
    return MODEL_FOLDER_SEPARATOR.join((trainer, plans_name, configuration))


def split_model_folder_name(name: str) -> tuple[str, str, str]:
    """(trainer, plans, configuration) of a model folder's name; ValueError for another name."""
    trainer, plans_name, configuration = name.split(MODEL_FOLDER_SEPARATOR)
    return trainer, plans_name, configuration


def is_model_folder_name(name: str) -> bool:
    """Whether ``name`` has the form ``<trainer>__<plans>__<configuration>``."""
    parts = name.split(MODEL_FOLDER_SEPARATOR)
    return len(parts) == 3 and all(parts)


def configuration_of(name: str) -> str:
    """The configuration named by a model folder's name (its last part)."""
    return name.rsplit(MODEL_FOLDER_SEPARATOR, maxsplit=1)[-1]


def fold_folder_name(fold: int | str) -> str:
    """``fold_<k>`` or ``fold_all``."""
    return f"{FOLD_PREFIX}{fold}"


def fold_of_folder(name: str) -> str | None:
    """``"3"`` or ``"all"`` for a fold folder's name, None for another name."""
    if not name.startswith(FOLD_PREFIX):
        return None
    fold = name.removeprefix(FOLD_PREFIX)
    return fold if fold.isdigit() or fold == ALL_FOLDS else None


def crossval_folder_name(folds: Iterable[int | str]) -> str:
    """``crossval_results_folds_0_1_2_3_4`` for those folds (sorted and distinct, so the same
    subset always gives the same folder)."""
    return CROSSVAL_PREFIX + "_".join(str(f) for f in sorted({int(f) for f in folds}))


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
