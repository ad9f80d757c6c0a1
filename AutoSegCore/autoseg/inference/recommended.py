"""The recommended inference of a dataset: what ``autoseg find_best_configuration`` chose, in one run.

find_best_configuration writes ``inference_information.json`` into the dataset's results folder:
the best single model or ensemble of two, the cross-validation folds and the post-processing file,
with paths relative to that folder so the file stays true after export and import. Reading it here
(instead of replaying inference_instructions.txt) lets one process, such as the Slicer Predict
module's child process, apply the whole choice: predict each chosen model into a hidden folder of
the output folder (with probabilities when two are ensembled), average them, post-process into the
output folder and remove the hidden folders. They stay when a run fails, so
``continue_prediction`` resumes it instead of predicting every model again.

Each model is predicted by a caller-supplied :class:`PredictModel` (the command line's predict):
predicting a folder (cascade stages, device, run files) is command-line orchestration that the
engine does not import. Ensembling and post-processing reuse their engine functions. No torch here.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from autoseg.atomic import write_json_atomic
from autoseg.dataset import DatasetSpec, load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.inference.case_files import find_input_cases
from autoseg.inference.ensemble import EnsembleTarget, ensemble_folders
from autoseg.inference.recommendation import Recommendation
from autoseg.paths import make_folder
from autoseg.postprocessing import Postprocessing, apply_postprocessing_folder
from autoseg.progress import ProgressCallback, no_progress
from autoseg.results_layout import (
    DATASET_JSON,
    FINAL_CHECKPOINT,
    INFORMATION_FILE,
    MODEL_FILES,
    PLANS_FILE,
    fold_folder_name,
)

__all__ = [
    "ENSEMBLE_STAGE",
    "INFORMATION_FILE",
    "MODELS_DIR",
    "POSTPROCESS_STAGE",
    "ModelStep",
    "PredictModel",
    "RecommendedRun",
    "predict_recommended",
]

MODELS_DIR = ".models"  # hidden: input scans and later steps skip it
ENSEMBLE_DIR = "ensemble"
ENSEMBLE_STAGE = "ensemble"
POSTPROCESS_STAGE = "postprocess"


@dataclass(frozen=True)
class ModelStep:
    """Predict the cases ``case_ids`` of the input folder with one model into ``output_dir``.

    ``stage`` names the step for progress (e.g. ``predict 3d_fullres``). Cases already complete in
    ``output_dir`` must be kept, not predicted again: the folder is new unless a run is resumed.
    """

    model_dir: Path
    output_dir: Path
    folds: tuple[str, ...]
    save_probabilities: bool
    case_ids: tuple[str, ...]
    stage: str


class PredictModel(Protocol):
    """Runs one :class:`ModelStep` (the command line passes its predict)."""

    def __call__(self, step: ModelStep, progress: ProgressCallback) -> None: ...


@dataclass(frozen=True)
class RecommendedRun:
    """Where to predict and the options that are not the prediction function's own.

    ``folds`` None uses the recommendation's folds; ``continue_prediction`` keeps the cases whose
    output exists and resumes from the hidden model folders a failed run left behind.
    """

    input_dir: Path
    output_dir: Path
    folds: tuple[str, ...] | None = None
    checkpoint: str = FINAL_CHECKPOINT
    continue_prediction: bool = False
    num_processes: int = 1


def _check_models(recommendation: Recommendation, folds: tuple[str, ...], checkpoint: str) -> None:
    """Every file each model needs, before anything is predicted (an ensemble would otherwise
    fail only after its first model ran)."""
    for model in recommendation.model_dirs:
        needed = [model / name for name in MODEL_FILES]
        needed += [model / fold_folder_name(fold) / checkpoint for fold in folds]
        missing = next((path for path in needed if not path.is_file()), None)
        if missing is not None:
            raise AutoSegError(
                f"{missing} is missing; the recommendation in {recommendation.information_file} "
                f"uses {model.name} with folds {' '.join(folds)}. Fix: train or import those "
                "folds, or choose folds that exist (-f)."
            )


def _check_folders(run: RecommendedRun) -> None:
    if Path(run.output_dir).resolve() == Path(run.input_dir).resolve():
        raise AutoSegError(
            f"{run.output_dir}: the output folder is the input folder, so predictions would be "
            "mixed with the images. Fix: choose another output folder."
        )


def _write_run_files(model_dir: Path, output_dir: Path) -> None:
    """dataset.json and plans.json of the (first) model, as a single-model prediction writes."""
    make_folder(output_dir, "the output folder (-o)")
    for name in MODEL_FILES:
        data = json.loads((model_dir / name).read_text(encoding="utf-8"))
        write_json_atomic(output_dir / name, data)


@dataclass(frozen=True)
class _Work:
    """What the steps of one run share."""

    recommendation: Recommendation
    dataset: DatasetSpec
    folds: tuple[str, ...]
    case_ids: tuple[str, ...]
    folder: Path  # OUTPUT/.models
    num_processes: int


def _ensemble(work: _Work, folders: list[Path], progress: ProgressCallback) -> Path:
    # Both AutoSeg's and nnU-Net's plans name the reader/writer at the top level.
    plans = json.loads((work.recommendation.model_dirs[0] / PLANS_FILE).read_text("utf-8"))
    target = EnsembleTarget(
        output_dir=work.folder / ENSEMBLE_DIR,
        labels=work.dataset.labels,
        file_ending=work.dataset.file_ending,
        reader_writer=str(plans.get("image_reader_writer", "SimpleITKIO")),
    )
    total = len(work.case_ids)
    progress(ENSEMBLE_STAGE, 0, total)
    ensemble_folders(folders, target, work.num_processes)
    progress(ENSEMBLE_STAGE, total, total)
    return target.output_dir


def _predict_models(work: _Work, predict_model: PredictModel, progress: ProgressCallback) -> Path:
    """Predict with every chosen model; returns the folder of the labels to post-process."""
    recommendation = work.recommendation
    folders = []
    for model, configuration in zip(
        recommendation.model_dirs, recommendation.configurations, strict=True
    ):
        step = ModelStep(
            model_dir=model,
            output_dir=work.folder / configuration,
            folds=work.folds,
            save_probabilities=recommendation.is_ensemble,
            case_ids=work.case_ids,
            stage=f"predict {configuration}",
        )
        predict_model(step, progress)
        folders.append(step.output_dir)
    return _ensemble(work, folders, progress) if recommendation.is_ensemble else folders[0]


def _pending(cases: list[str], run: RecommendedRun, file_ending: str) -> tuple[str, ...]:
    """All cases, or with ``continue_prediction`` those without their output file."""
    if not run.continue_prediction:
        return tuple(cases)
    return tuple(c for c in cases if not (run.output_dir / f"{c}{file_ending}").is_file())


def predict_recommended(
    recommendation: Recommendation,
    run: RecommendedRun,
    predict_model: PredictModel,
    progress: ProgressCallback = no_progress,
) -> tuple[int, int]:
    """Predict ``run.input_dir`` into ``run.output_dir`` as recommended: each model, their ensemble
    (two models), then the post-processing; final labels are ``CASE<ending>`` in the output folder.

    Returns (cases predicted, cases skipped because their output existed).
    """
    run = replace(run, input_dir=Path(run.input_dir), output_dir=Path(run.output_dir))
    _check_folders(run)
    folds = run.folds or recommendation.folds
    _check_models(recommendation, folds, run.checkpoint)
    pp_file = recommendation.postprocessing_file
    postprocessing = Postprocessing() if pp_file is None else Postprocessing.load(pp_file)
    dataset = load_dataset_json(recommendation.model_dirs[0] / DATASET_JSON)
    cases = find_input_cases(run.input_dir, dataset.num_channels, dataset.file_ending)
    folder = run.output_dir / MODELS_DIR
    if not run.continue_prediction and folder.exists():
        shutil.rmtree(folder)  # another run's leftovers must not be ensembled into this one
    todo = _pending([case_id for case_id, _ in cases], run, dataset.file_ending)
    _write_run_files(recommendation.model_dirs[0], run.output_dir)
    if todo:
        work = _Work(recommendation, dataset, folds, todo, folder, run.num_processes)
        labels_dir = _predict_models(work, predict_model, progress)
        progress(POSTPROCESS_STAGE, 0, len(todo))
        apply_postprocessing_folder(
            labels_dir,
            run.output_dir,
            postprocessing,
            dataset.file_ending,
            num_processes=run.num_processes,
        )
        progress(POSTPROCESS_STAGE, len(todo), len(todo))
    if folder.exists():
        shutil.rmtree(folder)
    return len(todo), len(cases) - len(todo)
