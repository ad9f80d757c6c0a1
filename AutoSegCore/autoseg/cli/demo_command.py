"""``autoseg demo``: the whole pipeline, as far as it exists, on a generated CT-like dataset.

It needs no data and no GPU, takes seconds, and leaves every artefact in one folder so a new user
can look at what each stage produced.
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
from autoseg.cli.demo_inference import held_out_dice, select_predict_evaluate
from autoseg.errors import AutoSegError
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
from autoseg.synthetic import SyntheticSpec, make_synthetic_dataset

DEMO_DATASET_ID = 900


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
    raw = make_synthetic_dataset(
        roots.raw, DEMO_DATASET_ID, num_cases=args.cases, spec=SyntheticSpec(with_test_cases=4)
    )
    folders = DatasetFolders.resolve(DEMO_DATASET_ID, roots)
    print(f"1/9 generated {args.cases} synthetic CT cases: {raw}")
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
    fold_dir, dice = _train_briefly(roots, args)
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
        f"\nAfter a {args.epochs}-epoch demo training: validation mean foreground Dice {dice:.3f}, "
        f"held-out test cases {held_out_dice(artefacts['test summary']):.3f}"
    )
    return 0


def _train_briefly(roots: DataRoots, args: argparse.Namespace) -> tuple[Path, float]:
    """5/9: a short 3d_fullres training of fold 0, ending with the real final validation."""
    # Imported here: training pulls in torch, which the data stages above never need.
    from autoseg.cli.train_launch import TrainRequest, build_job  # noqa: PLC0415
    from autoseg.training.run import RunOptions, train_fold  # noqa: PLC0415
    from autoseg.training.settings import TrainingSettings  # noqa: PLC0415
    from autoseg.training.validation import validation_dice  # noqa: PLC0415

    settings = TrainingSettings(
        epochs=args.epochs, iterations_per_epoch=args.iterations, val_iterations=3, seed=0
    )
    request = TrainRequest(str(DEMO_DATASET_ID), "3d_fullres", ("0",), None, settings, roots)
    job = build_job(request, 0)
    print(f"5/9 train 3d_fullres fold 0: {args.epochs} epochs x {args.iterations} iterations")
    summary = train_fold(job, RunOptions(echo=None, save_npz=True))
    return job.fold_dir, validation_dice(summary or {})


def register(commands: Any) -> None:
    demo = commands.add_parser("demo", help="run the pipeline on a generated synthetic CT dataset")
    demo.add_argument("--output", default="demo_output", help="folder for all demo artefacts")
    demo.add_argument("--cases", type=int, default=20, help="number of synthetic training cases")
    demo.add_argument("--epochs", type=int, default=6, help="epochs of the demo training")
    demo.add_argument("--iterations", type=int, default=20, help="iterations per demo epoch")
    demo.add_argument("-np", dest="num_processes", type=int, default=default_processes())
    add_progress_arguments(demo)
    demo.set_defaults(handler=run_demo)
