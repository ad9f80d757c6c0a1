"""Sub-commands that plan and preprocess: extract_fingerprint, plan_experiment, preprocess,
plan_and_preprocess. Flags keep nnU-Net's spellings (``-d``, ``-c``, ``-np``, ``-pl``, ...)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoseg.cli.common import (
    add_dataset_argument,
    add_progress_arguments,
    add_root_arguments,
    default_processes,
    progress_from,
    roots_from,
)
from autoseg.cli.data_commands import print_problems
from autoseg.errors import AutoSegError
from autoseg.inference.model_files import model_configuration
from autoseg.integrity import verify_or_raise
from autoseg.plan_summary import format_plans
from autoseg.planning import PlannerOptions, get_preset
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.stages import (
    DatasetFolders,
    fingerprint_dataset,
    plan_dataset,
    plan_dataset_from_model,
    preprocess_configurations,
)

DEFAULT_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
FINGERPRINT, PLAN, PREPROCESS = "fingerprint", "plan", "preprocess"


def _add_fingerprint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-npfp", dest="fingerprint_processes", type=int, default=None, help="fingerprint workers"
    )
    parser.add_argument(
        "--verify_dataset_integrity", action="store_true", help="run 'verify' first; stop on errors"
    )
    parser.add_argument("--clean", action="store_true", help="recompute even if results exist")


def _add_planner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-pl",
        dest="planner",
        default="default",
        help="planner preset: default, ResEnc, ResEncM, ResEncL, ResEncXL (nnU-Net names accepted)",
    )
    parser.add_argument(
        "--gpu-memory-target",
        "-gpu_memory_target",
        dest="gpu_memory_target",
        type=float,
        default=None,
        metavar="GB",
        help="GPU memory to plan for (default: the preset's, 8 GB for the default planner)",
    )
    parser.add_argument(
        "-overwrite_target_spacing",
        type=float,
        nargs="+",
        default=None,
        help="3d_fullres target spacing (transposed axis order) instead of the planned one",
    )
    parser.add_argument(
        "-overwrite_plans_name", dest="plans_name", default=None, help="name of the plans file"
    )
    parser.add_argument(
        "--plans-from",
        "--plans_from",
        dest="plans_from",
        type=Path,
        default=None,
        metavar="MODEL_FOLDER",
        help="copy a trained model's plans (spacing, patch, normalization and its intensity "
        "statistics, network) instead of planning, e.g. to fine-tune it with train --from-model; "
        "an AutoSeg or nnU-Net model folder (<trainer>__<plans>__<configuration>)",
    )


# Planner flags that choose planned values, which --plans-from takes from the model instead.
_PLANNER_CHOICES = (
    ("planner", "default", "-pl"),
    ("gpu_memory_target", None, "--gpu-memory-target"),
    ("overwrite_target_spacing", None, "-overwrite_target_spacing"),
)


def _add_preprocess_arguments(parser: argparse.ArgumentParser, plans_flag: bool) -> None:
    parser.add_argument(
        "-c",
        dest="configurations",
        nargs="+",
        default=None,
        help="configurations to preprocess (missing ones, e.g. 3d_lowres, are skipped; default "
        f"{' '.join(DEFAULT_CONFIGURATIONS)}, or the model's with --plans-from)",
    )
    parser.add_argument(
        "-np",
        dest="num_processes",
        type=int,
        nargs="+",
        default=None,
        help="workers, one number for all configurations or one per configuration",
    )
    if plans_flag:
        parser.add_argument("-plans_name", dest="plans_name", default=DEFAULT_PLANS_NAME)


def _processes(args: argparse.Namespace, *names: str) -> int:
    for name in names:
        value = getattr(args, name, None)
        if isinstance(value, list):
            value = max(value)
        if value:
            return int(value)
    return default_processes()


def _verify(
    folders: DatasetFolders, args: argparse.Namespace, env: Mapping[str, str], processes: int
) -> None:
    if args.verify_dataset_integrity:
        print(f"Verifying {folders.raw}")
        print_problems(verify_or_raise(folders.raw, processes, env, progress_from(args)))


def _fingerprint(folders: DatasetFolders, args: argparse.Namespace, env: Mapping[str, str]) -> None:
    processes = _processes(args, "fingerprint_processes", "num_processes")
    _verify(folders, args, env, processes)
    fingerprint_dataset(folders, processes, args.clean, progress_from(args))
    print(f"Fingerprint: {folders.fingerprint_file}")


def _plan(folders: DatasetFolders, args: argparse.Namespace) -> str:
    preset = get_preset(args.planner).with_memory_target(args.gpu_memory_target)
    spacing = tuple(args.overwrite_target_spacing) if args.overwrite_target_spacing else None
    options = PlannerOptions(
        preset=preset, overwrite_target_spacing=spacing, plans_name=args.plans_name
    )
    plans = plan_dataset(folders, options)
    print(format_plans(plans))
    print(f"Plans: {folders.plans_file(plans.plans_name)}")
    return plans.plans_name


def _plan_from_model(folders: DatasetFolders, args: argparse.Namespace) -> str:
    """--plans-from: the model's plans, renamed for this dataset (see planning/plans_transfer)."""
    chosen = [flag for name, default, flag in _PLANNER_CHOICES if getattr(args, name) != default]
    if chosen:
        raise AutoSegError(
            f"--plans-from {args.plans_from}: every planned value comes from the model, so "
            f"{', '.join(chosen)} cannot be used with it. Fix: drop {', '.join(chosen)}."
        )
    transferred = plan_dataset_from_model(folders, args.plans_from, args.plans_name)
    plans = transferred.plans
    print(format_plans(plans))
    print(f"Plans: {folders.plans_file(plans.plans_name)} (the plans of {args.plans_from})")
    if transferred.added_labels:
        print(
            f"Labels added to the model's: {', '.join(transferred.added_labels)} (fine-tuning "
            "with train --from-model starts the segmentation heads fresh)"
        )
    return plans.plans_name


def _configurations(args: argparse.Namespace) -> list[str]:
    """-c as given; else the model's configuration with --plans-from, else the usual three."""
    if args.configurations:
        return list(args.configurations)
    if getattr(args, "plans_from", None) is not None:
        return [model_configuration(args.plans_from)]
    return list(DEFAULT_CONFIGURATIONS)


def _preprocess(folders: DatasetFolders, args: argparse.Namespace, plans_name: str) -> None:
    processes: int | list[int] = args.num_processes or default_processes()
    if isinstance(processes, list) and len(processes) == 1:
        processes = processes[0]
    configurations = _configurations(args)
    done = preprocess_configurations(
        folders, plans_name, configurations, processes, args.clean, progress_from(args)
    )
    skipped = [c for c in configurations if c not in done]
    if skipped:
        print(f"Skipped (not in the plans): {', '.join(skipped)}")
    print(f"Preprocessed {', '.join(done) or 'nothing'} into {folders.preprocessed}")


def _for_each_dataset(
    args: argparse.Namespace, env: Mapping[str, str], steps: tuple[str, ...]
) -> int:
    """Run the requested steps, in pipeline order, for every dataset named with -d."""
    roots = roots_from(args, env)
    for identifier in args.datasets:
        folders = DatasetFolders.resolve(identifier, roots, env)
        plans_name = getattr(args, "plans_name", None) or DEFAULT_PLANS_NAME
        from_model = getattr(args, "plans_from", None) is not None
        if FINGERPRINT in steps and not from_model:
            _fingerprint(folders, args, env)
        elif FINGERPRINT in steps:  # the model's plans need no fingerprint; verify still runs
            _verify(folders, args, env, _processes(args, "fingerprint_processes", "num_processes"))
        if PLAN in steps:
            plans_name = _plan_from_model(folders, args) if from_model else _plan(folders, args)
        if PREPROCESS in steps and not getattr(args, "no_pp", False):
            _preprocess(folders, args, plans_name)
    return 0


def register(commands: Any) -> None:
    both = commands.add_parser(
        "plan_and_preprocess",
        help="fingerprint, plan and preprocess (nnUNetv2_plan_and_preprocess)",
    )
    add_dataset_argument(both)
    _add_fingerprint_arguments(both)
    _add_planner_arguments(both)
    _add_preprocess_arguments(both, plans_flag=False)
    both.add_argument("--no_pp", action="store_true", help="stop after planning")
    both.set_defaults(handler=lambda a, e: _for_each_dataset(a, e, (FINGERPRINT, PLAN, PREPROCESS)))

    fingerprint = commands.add_parser(
        "extract_fingerprint", help="compute dataset_fingerprint.json"
    )
    add_dataset_argument(fingerprint)
    _add_fingerprint_arguments(fingerprint)
    fingerprint.add_argument("-np", dest="num_processes", type=int, default=None)
    fingerprint.set_defaults(handler=lambda a, e: _for_each_dataset(a, e, (FINGERPRINT,)))

    plan = commands.add_parser("plan_experiment", help="write the plans file from the fingerprint")
    add_dataset_argument(plan)
    _add_planner_arguments(plan)
    plan.set_defaults(handler=lambda a, e: _for_each_dataset(a, e, (PLAN,)))

    preprocess = commands.add_parser(
        "preprocess", help="preprocess the configurations of a plans file"
    )
    add_dataset_argument(preprocess)
    _add_preprocess_arguments(preprocess, plans_flag=True)
    preprocess.add_argument("--clean", action="store_true", help="redo finished cases")
    preprocess.set_defaults(handler=lambda a, e: _for_each_dataset(a, e, (PREPROCESS,)))

    for parser in (both, fingerprint, plan, preprocess):
        add_root_arguments(parser)
        add_progress_arguments(parser)
