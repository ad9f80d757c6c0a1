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

Backend (--backend): the network runs in torch, or in a CPU runtime (OpenVINO, onnxruntime; pip
install 'autoseg[cpu]'), converted once and cached in runtime_cache/ beside each checkpoint. auto
uses OpenVINO on the CPU when it is installed (measured fastest, bench/predict.py) and torch on a GPU.

-npp/-nps are accepted for nnU-Net compatibility and ignored: AutoSeg predicts one case at a time
in this process (read, preprocess, network, export), which keeps memory bounded by one case. To use
more cores or GPUs, start several processes with -num_parts N -part_id K (each takes every N-th case).
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoseg.cli.common import (
    add_progress_arguments,
    add_root_arguments,
    progress_from,
    roots_from,
)
from autoseg.cli.predict_recommended import RECOMMENDED_HELP, run_recommended
from autoseg.errors import AutoSegError
from autoseg.inference.backends.base import AUTO, BACKENDS
from autoseg.inference.folder_prediction import (
    PredictJob,
    predict,
)
from autoseg.inference.recommendation import is_dataset_results_folder
from autoseg.interop.nnunet_plans import NNUNET_PLANS, NNUNET_TRAINER
from autoseg.out_of_memory import PREDICTION_ADVICE, out_of_memory_reported, report_as_json_event
from autoseg.paths import resolve_dataset_name
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.results_layout import FINAL_CHECKPOINT, MODEL_FOLDER_PATTERN, model_folder_name
from autoseg.training.job import TRAINER_NAME

DEFAULT_STEP = 0.5
FAST_STEP = 0.75
# nnU-Net's default trainer (and its epoch variants, which `autoseg train` maps onto settings)
# trains into AutoSeg's one trainer folder.
_NNUNET_TRAINER = re.compile(r"nnUNetTrainer(_\d+epochs)?")
# What -m replaces: flag, argparse destination.
_NAMING_FLAGS = (("-d", "dataset"), ("-c", "configuration"), ("-tr", "trainer"), ("-p", "plans"))


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
    group.add_argument("-chk", dest="checkpoint", default=FINAL_CHECKPOINT)


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
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=AUTO,
        help="what runs the network: auto (OpenVINO on the CPU when installed, else torch), "
        "torch, openvino, onnxruntime (CPU runtimes: pip install 'autoseg[cpu]')",
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
    # An nnU-Net v2 model folder keeps nnU-Net's names (defaults nnUNetTrainer, nnUNetPlans).
    nnunet = model_folder_name(
        args.trainer or NNUNET_TRAINER, args.plans or NNUNET_PLANS, args.configuration
    )
    for candidate in (name, nnunet):
        if (dataset_dir / candidate).is_dir():
            return dataset_dir / candidate
    found = sorted(p.name for p in dataset_dir.glob(MODEL_FOLDER_PATTERN) if p.is_dir())
    raise AutoSegError(
        f"{dataset_dir / name}: no such model folder (trained here: {', '.join(found) or 'none'})."
        " Fix: train it first, or choose -c/-tr/-p of a trained model."
    )


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
        backend=args.backend,
    )


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
