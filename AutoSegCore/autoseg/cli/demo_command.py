"""``autoseg demo``: the whole pipeline, as far as it exists, on a generated CT-like dataset.

It needs no data and no GPU, takes a minute or two on a laptop's CPU, and leaves every artefact in
one folder so a new user can look at what each stage produced. The data (``DEMO_SPEC``) and the
training budget are chosen together so that the short training visibly learns both classes.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoseg.cli.common import add_progress_arguments, default_processes, progress_from
from autoseg.cli.data_commands import print_problems
from autoseg.cli.demo_inference import format_dice_table, select_predict_evaluate
from autoseg.errors import AutoSegError
from autoseg.evaluation import load_summary
from autoseg.integrity import verify_or_raise
from autoseg.paths import DataRoots, make_folder
from autoseg.plan_summary import format_plans
from autoseg.planning import PlannerOptions
from autoseg.stages import (
    DatasetFolders,
    fingerprint_dataset,
    plan_dataset,
    preprocess_configurations,
)
from autoseg.synthetic import DEMO_SPEC, LABELS, make_synthetic_dataset

DEMO_DATASET_ID = 900
DEMO_EPOCHS = 10
DEMO_ITERATIONS = 25


def _prepare_output(output: Path, fresh: bool) -> DataRoots:
    marker = output / ".autoseg-demo"
    if output.is_dir() and any(output.iterdir()) and not marker.exists():
        raise AutoSegError(
            f"{output} exists and was not made by 'autoseg demo'. Fix: pass another --output folder."
        )
    if fresh and marker.exists():
        shutil.rmtree(output)
    make_folder(output, "the demo folder (--output)")
    marker.touch()
    return DataRoots(output / "raw", output / "preprocessed", output / "results")


def run_demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    started = time.perf_counter()
    roots = _prepare_output(Path(args.output), fresh=True)
    progress = progress_from(args)
    raw = make_synthetic_dataset(roots.raw, DEMO_DATASET_ID, num_cases=args.cases, spec=DEMO_SPEC)
    folders = DatasetFolders.resolve(DEMO_DATASET_ID, roots)
    held_out = DEMO_SPEC.with_test_cases
    print(f"1/9 generated {args.cases} synthetic CT cases (+{held_out} held out): {raw}")
    print("2/9 verify")
    print_problems(verify_or_raise(folders.raw, args.num_processes, env, progress))
    print("3/9 fingerprint + plan")
    fingerprint_dataset(folders, args.num_processes, progress=progress)
    plans = plan_dataset(folders, PlannerOptions())
    print(format_plans(plans))
    print("4/9 preprocess")
    configurations = list(plans.configurations)
    preprocess_configurations(
        folders, plans.plans_name, configurations, args.num_processes, progress=progress
    )
    fold_dir, validation = _train_briefly(roots, args)
    artefacts = select_predict_evaluate(roots, folders.name, raw, Path(args.output))
    print(f"\nDone in {time.perf_counter() - started:.1f} s. Artefacts:")
    print(f"  raw dataset        {folders.raw}")
    print(f"  fingerprint        {folders.fingerprint_file}")
    print(f"  plans              {folders.plans_file(plans.plans_name)}")
    for config in plans.configurations.values():
        print(f"  {config.name:<18} {folders.preprocessed / config.data_identifier}")
    print(f"  trained fold       {fold_dir}  (progress.png, events.jsonl, checkpoints)")
    print(f"  validation         {fold_dir / 'validation' / 'summary.json'}")
    for name, path in artefacts.items():
        print(f"  {name:<18} {path}")
    print(
        f"\nAfter a {args.epochs} x {args.iterations}-iteration demo training of 3d_fullres fold 0:"
    )
    print(format_dice_table(validation, load_summary(artefacts["test summary"]), LABELS))
    return 0


def _train_briefly(roots: DataRoots, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """5/9: a short 3d_fullres training of fold 0, ending with the real final validation.

    The budget is the demo's own (``--epochs``, ``--iterations``), passed as settings; every other
    setting keeps the method's default. Returns the fold folder and the validation summary.
    """
    # Imported here: training pulls in torch, which the data stages above never need.
    from autoseg.cli.train_launch import TrainRequest, build_job  # noqa: PLC0415
    from autoseg.training.run import RunOptions, train_fold  # noqa: PLC0415
    from autoseg.training.settings import TrainingSettings  # noqa: PLC0415

    settings = TrainingSettings(
        epochs=args.epochs, iterations_per_epoch=args.iterations, val_iterations=3, seed=0
    )
    request = TrainRequest(str(DEMO_DATASET_ID), "3d_fullres", ("0",), None, settings, roots)
    job = build_job(request, 0)
    print(f"5/9 train 3d_fullres fold 0: {args.epochs} epochs x {args.iterations} iterations")
    summary = train_fold(job, RunOptions(echo=None, save_npz=True))
    return job.fold_dir, summary or {}


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run the pipeline on a generated synthetic CT dataset")
    demo.add_argument("--output", default="demo_output", help="folder for all demo artefacts")
    demo.add_argument("--cases", type=int, default=20, help="number of synthetic training cases")
    # 250 iterations on DEMO_SPEC's small volumes: both classes pass a validation Dice of 0.7 after
    # at most 100 (three seeds tried), and the whole demo takes 1-2 minutes on 2 CPU cores.
    demo.add_argument("--epochs", type=int, default=DEMO_EPOCHS, help="epochs of the demo training")
    demo.add_argument(
        "--iterations", type=int, default=DEMO_ITERATIONS, help="iterations per demo epoch"
    )
    demo.add_argument("-np", dest="num_processes", type=int, default=default_processes())
    add_progress_arguments(demo)
    demo.set_defaults(handler=run_demo)
