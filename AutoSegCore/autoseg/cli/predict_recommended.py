"""``autoseg predict -m <results>/DatasetXXX_Name``: the recommended inference of a dataset.

The command-line side of :mod:`autoseg.inference.recommended`: it refuses the options that do not
apply, resolves the folds (--fast: the first recommended fold) and predicts each chosen model with
``autoseg predict``'s own function, so a model of a recommendation is predicted exactly as
``predict -m MODEL_FOLDER`` would predict it. A module of its own keeps predict_command small.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from autoseg import __version__
from autoseg.atomic import write_json_atomic
from autoseg.errors import AutoSegError
from autoseg.inference.folder_prediction import ARGS_FILE, CASES_STAGE, PredictJob, predict
from autoseg.inference.recommendation import Recommendation, read_recommendation
from autoseg.inference.recommended import (
    ModelStep,
    PredictModel,
    RecommendedRun,
    predict_recommended,
)
from autoseg.progress import ProgressCallback

RECOMMENDED_HELP = """
Recommended inference: -m <results>/DatasetXXX_Name (a dataset's results folder after
find_best_configuration, or the folder import_model created) runs what find_best_configuration
chose: each chosen model (its cross-validation folds unless -f) into OUT/.models/, their ensemble
when two were chosen, then the chosen post-processing; OUT receives the final labels and .models/
is removed (a failed run leaves it, and --continue_prediction resumes from it). -f, -chk,
-step_size, --disable_tta, --fast (the first recommended fold), -device and --progress apply;
--save_probabilities, -prev_stage_predictions and -num_parts/-part_id do not.
"""


def _check_options(job: PredictJob) -> None:
    """Options of a single-model prediction that have no meaning for the whole recommendation."""
    refused = [
        flag
        for flag, given in (
            ("--save_probabilities", job.save_probabilities),
            ("-prev_stage_predictions", job.previous_stage is not None),
            ("-num_parts/-part_id", job.num_parts != 1 or job.part_id != 0),
        )
        if given
    ]
    if refused:
        raise AutoSegError(
            f"-m {job.model_dir} runs the recommended inference (post-processed labels of all "
            f"cases in one process), where {', '.join(refused)} does not apply. Fix: leave it "
            "out, or pass one model folder (<trainer>__<plans>__<configuration>) to -m."
        )


def _folds(job: PredictJob, recommendation: Recommendation) -> tuple[str, ...]:
    """-f when given, else the recommended folds (only the first one in fast mode)."""
    if job.folds is not None:
        return job.folds
    return recommendation.folds[:1] if job.fast else recommendation.folds


def model_predictor(job: PredictJob) -> PredictModel:
    """A :class:`PredictModel` that runs ``autoseg predict`` with the options of ``job``.

    Each step resumes what its folder holds (continue_prediction): the folder is new unless a
    failed run is resumed, because the recommended run removes it otherwise.
    """

    def predict_model(step: ModelStep, progress: ProgressCallback) -> None:
        def report(stage: str, done: int, total: int) -> None:
            progress(step.stage if stage == CASES_STAGE else stage, done, total)

        model_job = replace(
            job,
            model_dir=step.model_dir,
            output_dir=step.output_dir,
            folds=step.folds,
            save_probabilities=step.save_probabilities,
            continue_prediction=True,
            case_ids=step.case_ids,
        )
        predict(model_job, report)

    return predict_model


def _write_args(job: PredictJob, recommendation: Recommendation) -> None:
    """predict_args.json: the resolved options and what was recommended."""
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(job).items()}
    settings |= {"recommendation": recommendation.describe(), "version": __version__}
    write_json_atomic(job.output_dir / ARGS_FILE, settings)


def run_recommended(job: PredictJob, progress: ProgressCallback) -> int:
    """Run the recommendation of the dataset results folder ``job.model_dir``; exit code 0."""
    _check_options(job)
    recommendation = read_recommendation(job.model_dir)
    job = replace(job, folds=_folds(job, recommendation))
    run = RecommendedRun(
        input_dir=job.input_dir,
        output_dir=job.output_dir,
        folds=job.folds,
        checkpoint=job.checkpoint,
        continue_prediction=job.continue_prediction,
    )
    started = time.perf_counter()
    predicted, skipped = predict_recommended(recommendation, run, model_predictor(job), progress)
    _write_args(job, recommendation)
    seconds = time.perf_counter() - started
    models = " + ".join(recommendation.configurations)
    print(
        f"Predicted {predicted} case(s) into {job.output_dir} in {seconds:.1f} s with "
        f"{recommendation.name} ({models}, folds {' '.join(job.folds or ())}, post-processing "
        f"{recommendation.postprocessing_file or 'none'})"
        + (f"; skipped {skipped} already predicted" if skipped else "")
    )
    return 0
