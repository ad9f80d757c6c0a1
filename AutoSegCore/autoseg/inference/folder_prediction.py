"""Predicting a folder of cases with one model: folds, cascade, ``-num_parts``, run files.

The command line only parses (``cli/predict_command.py``); this module does the work, so the Python
API, the dataset's recommended inference and the CLI share one path. A cascade stage without
``previous_stage`` first predicts its previous stage into ``OUT/.lowres/`` (kept for inspection and
reused with ``continue_prediction``); parts write the same run files atomically into one folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from autoseg import __version__
from autoseg.atomic import write_json_atomic
from autoseg.errors import AutoSegError
from autoseg.inference.backends.base import device_for_backend
from autoseg.inference.case_files import InputCase, find_input_cases
from autoseg.inference.model_files import previous_stage_folder
from autoseg.paths import make_folder
from autoseg.progress import ProgressCallback
from autoseg.results_layout import FOLD_PREFIX, MODEL_FILES, fold_of_folder

if TYPE_CHECKING:
    from autoseg.inference.model_folder import ModelFolder

LOWRES_FOLDER = ".lowres"
ARGS_FILE = "predict_args.json"
CASES_STAGE = "cases"
OUTPUT_FOLDER = "the output folder (-o)"


@dataclass(frozen=True)
class PredictJob:
    """One ``autoseg predict`` call with every option resolved (written to predict_args.json)."""

    input_dir: Path
    output_dir: Path
    model_dir: Path
    folds: tuple[str, ...] | None  # None: every trained fold (the first one with ``fast``)
    checkpoint: str
    step: float
    mirror_tta: bool
    device: str
    save_probabilities: bool
    continue_prediction: bool
    previous_stage: Path | None
    num_parts: int = 1
    part_id: int = 0
    fast: bool = False
    case_ids: tuple[str, ...] | None = None  # None: every case of the input folder
    backend: str = "auto"  # what runs the network (autoseg.inference.backends)


def _first_fold(model_dir: Path, checkpoint: str) -> tuple[str, ...] | None:
    """The lowest numbered fold holding the checkpoint (None: let the model folder explain)."""
    numbered = sorted(
        int(fold)
        for path in model_dir.glob(f"{FOLD_PREFIX}*")
        for fold in [fold_of_folder(path.name)]
        if fold is not None and fold.isdigit() and (path / checkpoint).is_file()
    )
    return (str(numbered[0]),) if numbered else None


def open_model(job: PredictJob) -> ModelFolder:
    """The validated model folder with the folds the job asks for."""
    from autoseg.inference.model_folder import ModelFolder  # noqa: PLC0415 (pulls in torch)

    folds = job.folds
    if folds is None and job.fast:
        folds = _first_fold(job.model_dir, job.checkpoint)
    return ModelFolder.open(job.model_dir, folds, job.checkpoint)


def output_file(folder: Path, case_id: str, model: ModelFolder) -> Path:
    return folder / f"{case_id}{model.dataset.file_ending}"


def _pending(
    cases: Sequence[InputCase], folder: Path, model: ModelFolder, job: PredictJob
) -> list[InputCase]:
    """Cases still to predict: all, or with --continue_prediction those without complete output."""
    if not job.continue_prediction:
        return list(cases)

    def done(case_id: str) -> bool:
        if not output_file(folder, case_id, model).is_file():
            return False
        return not job.save_probabilities or (folder / f"{case_id}.npz").is_file()

    return [case for case in cases if not done(case[0])]


def _check_previous(folder: Path, cases: Sequence[InputCase], model: ModelFolder) -> None:
    """A user's -prev_stage_predictions must fit the model and hold every case to predict."""
    if not model.is_cascade:
        raise AutoSegError(
            f"-prev_stage_predictions {folder}: {model.configuration} is not a cascade stage. "
            "Fix: leave the flag out, or predict with the cascade configuration."
        )
    missing = [c for c, _ in cases if not output_file(folder, c, model).is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise AutoSegError(
            f"{folder}: no previous-stage prediction for {len(missing)} case(s) ({shown}; "
            f"expected CASE{model.dataset.file_ending}). Fix: predict them with "
            f"{model.config.previous_stage} first, or leave -prev_stage_predictions out."
        )


def previous_stage_model(model: ModelFolder) -> ModelFolder:
    """The model of the stage before a cascade stage: same trainer, plans, folds and checkpoint."""
    from autoseg.inference.model_folder import ModelFolder  # noqa: PLC0415 (pulls in torch)

    folder = previous_stage_folder(model.path, str(model.config.previous_stage))
    return ModelFolder.open(folder, model.folds, model.checkpoint_name)


class _CaseProgress:
    """Forwards the sliding window's progress under the name of the case being predicted."""

    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress
        self.label = ""

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.progress(self.label, done, total)


def predict_cases(
    model: ModelFolder,
    cases: Sequence[InputCase],
    output_dir: Path,
    job: PredictJob,
    progress: ProgressCallback,
) -> int:
    """Predict ``cases`` into ``output_dir`` (a cascade stage runs its previous stage first)."""
    from autoseg.inference.predictor import PredictionOptions, Predictor  # noqa: PLC0415

    if not cases:
        return 0
    previous = job.previous_stage
    if model.is_cascade and previous is None:
        lowres, previous = previous_stage_model(model), output_dir / LOWRES_FOLDER
        lowres_job = replace(job, save_probabilities=False)
        pending = _pending(cases, previous, lowres, lowres_job)
        predict_cases(lowres, pending, previous, lowres_job, progress)
    options = PredictionOptions(
        step=job.step,
        mirror_tta=job.mirror_tta,
        device=job.device,
        save_probabilities=job.save_probabilities,
        backend=job.backend,
    )
    reporter = _CaseProgress(progress)
    predictor = Predictor.from_model_folder(model, options, progress=reporter)
    for index, (case_id, files) in enumerate(cases, start=1):
        reporter.label = f"{model.configuration} {case_id} ({index}/{len(cases)})"
        previous_file = None if previous is None else output_file(previous, case_id, model)
        target = output_file(output_dir, case_id, model)
        predictor.predict_files(files, target, previous_segmentation_file=previous_file)
        progress(CASES_STAGE, index, len(cases))
    return len(cases)


def write_run_files(job: PredictJob, model: ModelFolder, cases: Sequence[InputCase]) -> None:
    """dataset.json, plans.json and predict_args.json (the resolved job) into the output folder.

    Written atomically: parallel parts (-num_parts) write the same files into one folder.
    """
    make_folder(job.output_dir, OUTPUT_FOLDER)  # a bad -o: one line, before any prediction
    for name in MODEL_FILES:
        text = (model.path / name).read_text(encoding="utf-8")
        write_json_atomic(job.output_dir / name, json.loads(text))
    if model.is_cascade and job.previous_stage is None:
        job = replace(job, previous_stage=job.output_dir / LOWRES_FOLDER)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()}
    settings |= model.describe() | {"cases": [c for c, _ in cases], "version": __version__}
    write_json_atomic(job.output_dir / ARGS_FILE, settings)


def predict(job: PredictJob, progress: ProgressCallback) -> tuple[int, int]:
    """Run a job; returns (cases predicted, cases of this part skipped as already done)."""
    from autoseg.inference.precision import resolve_device  # noqa: PLC0415 (pulls in torch)

    device = device_for_backend(job.device, job.backend)
    job = replace(job, device=str(resolve_device(device)))
    model = open_model(job)
    cases = find_input_cases(job.input_dir, model.dataset.num_channels, model.dataset.file_ending)
    if job.case_ids is not None:
        cases = [case for case in cases if case[0] in job.case_ids]
    part = cases[job.part_id :: job.num_parts]
    todo = _pending(part, job.output_dir, model, job)
    if job.previous_stage is not None:
        _check_previous(job.previous_stage, todo, model)
    write_run_files(job, model, part)
    return predict_cases(model, todo, job.output_dir, job, progress), len(part) - len(todo)
