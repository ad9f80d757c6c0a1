"""``autoseg predict -i IN -o OUT -d DATASET -c CONFIGURATION`` (or ``-m MODEL_FOLDER``): nnUNetv2_predict.

Input files are named like training images, CASE_0000<ending> .. one per channel; the whole folder
is checked first and every naming problem is listed at once. Each case is preprocessed like the
training data, predicted with every chosen fold (sliding window, mirroring TTA, logits averaged over
folds) and written with the exact geometry of its input. The output folder also receives
dataset.json, plans.json and predict_args.json (the resolved options of the run).

Model: -m MODEL_FOLDER names a trained model folder directly and replaces -d/-c/-tr/-p (-m with a
dataset's results folder runs its recommended inference, see the end); otherwise the folder is
<results>/DatasetXXX_Name/<trainer>__<plans>__<configuration>. Folds: by default every trained
fold_<k> holding the checkpoint; -f 0 1 2 3 4 or -f all (the model trained on all cases).

Cascade: for 3d_cascade_fullres without -prev_stage_predictions the 3d_lowres model of the same
trainer and plans first predicts the cases into OUT/.lowres/ (same folds, step, TTA and device; kept
for inspection and reused by --continue_prediction), then the cascade stage uses those predictions.

Fast CPU mode (--fast): no mirroring TTA, step 0.75 instead of 0.5 and only the first trained fold
(unless -f or -step_size say otherwise). Without TTA a 3D case needs 1/8 of the network passes and
one fold 1/5 of a five-fold ensemble; the Dice cost is small but not zero (bench/predict.py
measures both). bf16 is used on CPUs with native bf16 support in every mode.

-npp/-nps are accepted for nnU-Net compatibility and ignored: AutoSeg predicts one case at a time
in this process (read, preprocess, network, export), which keeps memory bounded by one case. To use
more cores or GPUs, start several processes with -num_parts N -part_id K (each takes every N-th case).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autoseg import __version__
from autoseg.atomic import write_json_atomic
from autoseg.cli.common import (
    add_progress_arguments,
    add_root_arguments,
    progress_from,
    roots_from,
)
from autoseg.cli.predict_recommended import RECOMMENDED_HELP, run_recommended
from autoseg.errors import AutoSegError
from autoseg.inference.case_files import InputCase, find_input_cases
from autoseg.inference.recommended import is_dataset_results_folder
from autoseg.out_of_memory import PREDICTION_ADVICE, out_of_memory_reported, report_as_json_event
from autoseg.paths import make_folder, resolve_dataset_name
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.progress import ProgressCallback
from autoseg.training.job import TRAINER_NAME, model_folder_name

if TYPE_CHECKING:
    from autoseg.inference.model_folder import ModelFolder

DEFAULT_STEP = 0.5
FAST_STEP = 0.75
DEFAULT_CHECKPOINT = "checkpoint_final.pth"
LOWRES_FOLDER = ".lowres"
ARGS_FILE = "predict_args.json"
CASES_STAGE = "cases"
OUTPUT_FOLDER = "the output folder (-o)"
# nnU-Net's default trainer (and its epoch variants, which `autoseg train` maps onto settings)
# trains into AutoSeg's one trainer folder.
_NNUNET_TRAINER = re.compile(r"nnUNetTrainer(_\d+epochs)?")
# What -m replaces: flag, argparse destination.
_NAMING_FLAGS = (("-d", "dataset"), ("-c", "configuration"), ("-tr", "trainer"), ("-p", "plans"))


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


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (either -m, or -d and -c)")
    group.add_argument("-m", dest="model", metavar="MODEL_FOLDER", help="a model or results folder")
    group.add_argument("-d", dest="dataset", help="dataset id or name, e.g. 4")
    group.add_argument("-c", dest="configuration", help="e.g. 3d_fullres, 2d, 3d_cascade_fullres")
    group.add_argument("-p", dest="plans", default=None, help="plans (default AutoSegPlans)")
    group.add_argument(
        "-tr",
        dest="trainer",
        default=None,
        help="trainer folder name (default AutoSegTrainer; nnUNetTrainer means the same)",
    )
    group.add_argument(
        "-f", dest="folds", nargs="+", default=None, help="0 1 2 3 4 or all (default: all trained)"
    )
    group.add_argument("-chk", dest="checkpoint", default=DEFAULT_CHECKPOINT)


def _add_prediction_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", dest="input", required=True, help="folder of CASE_0000<ending> files")
    parser.add_argument("-o", dest="output", required=True, help="output folder (not the input)")
    parser.add_argument(
        "-step_size", type=float, default=None, help="tile step / patch (default 0.5; fast 0.75)"
    )
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring (about 8x faster)")
    parser.add_argument(
        "--save_probabilities", action="store_true", help="also write CASE.npz + CASE.json"
    )
    parser.add_argument(
        "--continue_prediction", action="store_true", help="skip cases whose output exists"
    )
    parser.add_argument(
        "-prev_stage_predictions",
        default=None,
        metavar="FOLDER",
        help="previous-stage segmentations for a cascade (default: predict them into OUT/.lowres)",
    )
    parser.add_argument("-num_parts", type=int, default=1, help="split the cases into N parts")
    parser.add_argument("-part_id", type=int, default=0, help="predict part K (0 .. N-1)")
    parser.add_argument("-device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda[:N], mps")
    parser.add_argument(
        "--fast", action="store_true", help="fast CPU mode: no TTA, step 0.75, first fold only"
    )


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "predict",
        help="predict a folder of images with a trained model (nnUNetv2_predict)",
        description=__doc__ + RECOMMENDED_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_prediction_arguments(parser)
    _add_model_arguments(parser)
    compat = parser.add_argument_group("accepted for nnU-Net compatibility, ignored (see above)")
    for flag in ("-npp", "-nps"):
        compat.add_argument(flag, type=int, default=None, help="ignored: one case at a time")
    add_progress_arguments(parser)
    parser.add_argument(
        "--disable_progress_bar",
        action="store_const",
        dest="progress",
        const="none",
        help="same as --progress none",
    )
    add_root_arguments(parser)
    parser.set_defaults(handler=run)


def trainer_folder_name(trainer: str | None) -> str:
    """The trainer part of a model folder name; nnU-Net's trainer names mean AutoSeg's."""
    if trainer is None or _NNUNET_TRAINER.fullmatch(trainer):
        return TRAINER_NAME
    return trainer


def _model_dir(args: argparse.Namespace, env: Mapping[str, str]) -> Path:
    if args.model is not None:
        given = [flag for flag, key in _NAMING_FLAGS if getattr(args, key) is not None]
        if given:
            raise AutoSegError(
                f"-m MODEL_FOLDER replaces -d/-c/-tr/-p, but {'/'.join(given)} was given too. "
                "Fix: pass either -m or -d and -c."
            )
        return Path(args.model)
    if args.dataset is None or args.configuration is None:
        raise AutoSegError(
            "no model given. Fix: pass -d DATASET -c CONFIGURATION (plus -tr/-p when they are not "
            "the defaults) or -m MODEL_FOLDER."
        )
    roots = roots_from(args, env)
    dataset_dir = roots.require_results() / resolve_dataset_name(args.dataset, roots)
    plans = args.plans or DEFAULT_PLANS_NAME
    name = model_folder_name(trainer_folder_name(args.trainer), plans, args.configuration)
    if not (dataset_dir / name).is_dir():
        found = sorted(p.name for p in dataset_dir.glob("*__*__*") if p.is_dir())
        raise AutoSegError(
            f"{dataset_dir / name}: no such model folder (trained here: {', '.join(found) or 'none'})."
            " Fix: train it first, or choose -c/-tr/-p of a trained model."
        )
    return dataset_dir / name


def _check_folders(input_dir: Path, output_dir: Path) -> None:
    if not input_dir.is_dir():
        raise AutoSegError(f"{input_dir}: input folder not found. Fix: pass an existing -i folder.")
    if output_dir.resolve() == input_dir.resolve():
        raise AutoSegError(
            f"{output_dir}: the output folder is the input folder, so predictions would be mixed "
            "with the images. Fix: pass another -o folder."
        )


def _check_parts(num_parts: int, part_id: int) -> None:
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise AutoSegError(
            f"-num_parts {num_parts} -part_id {part_id}: part_id must be in 0 .. num_parts-1. "
            "Fix: e.g. run -num_parts 2 -part_id 0 and -num_parts 2 -part_id 1 side by side."
        )


def job_from(args: argparse.Namespace, env: Mapping[str, str]) -> PredictJob:
    """Resolve and check the command line (folders, parts, model folder) before any heavy work."""
    input_dir, output_dir = Path(args.input), Path(args.output)
    _check_folders(input_dir, output_dir)
    _check_parts(args.num_parts, args.part_id)
    default_step = FAST_STEP if args.fast else DEFAULT_STEP
    return PredictJob(
        input_dir=input_dir,
        output_dir=output_dir,
        model_dir=_model_dir(args, env),
        folds=tuple(args.folds) if args.folds else None,
        checkpoint=args.checkpoint,
        step=args.step_size if args.step_size is not None else default_step,
        mirror_tta=not (args.disable_tta or args.fast),
        device=args.device,
        save_probabilities=args.save_probabilities,
        continue_prediction=args.continue_prediction,
        previous_stage=Path(args.prev_stage_predictions) if args.prev_stage_predictions else None,
        num_parts=args.num_parts,
        part_id=args.part_id,
        fast=args.fast,
    )


def _first_fold(model_dir: Path, checkpoint: str) -> tuple[str, ...] | None:
    """The lowest numbered fold holding the checkpoint (None: let the model folder explain)."""
    numbered = sorted(
        int(path.name.removeprefix("fold_"))
        for path in model_dir.glob("fold_*")
        if path.name.removeprefix("fold_").isdigit() and (path / checkpoint).is_file()
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

    trainer, plans, _ = model.path.name.split("__")
    stage = str(model.config.previous_stage)
    folder = model.path.parent / model_folder_name(trainer, plans, stage)
    if not folder.is_dir():
        raise AutoSegError(
            f"{model.path.name} is a cascade stage after {stage!r}, but {folder} does not exist. "
            f"Fix: train {stage} (the same folds), or pass -prev_stage_predictions FOLDER."
        )
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
    for name in ("dataset.json", "plans.json"):
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

    job = replace(job, device=str(resolve_device(job.device)))
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


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    report = report_as_json_event if args.progress == "json" else None  # out of memory: one line
    with out_of_memory_reported("Prediction", PREDICTION_ADVICE, report):
        job = job_from(args, env)
        if is_dataset_results_folder(job.model_dir):  # a dataset's recommended inference
            return run_recommended(job, progress_from(args))
        started = time.perf_counter()
        predicted, skipped = predict(job, progress_from(args))
    seconds = time.perf_counter() - started
    rate = f", {seconds / predicted:.2f} s per case" if predicted else ""
    print(
        f"Predicted {predicted} case(s) into {job.output_dir} in {seconds:.1f} s{rate}"
        + (f"; skipped {skipped} already predicted" if skipped else "")
    )
    return 0
