"""Sub-commands on raw datasets: verify, convert_msd, convert_old_dataset."""

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
from autoseg.conversion import convert_msd, convert_old_dataset
from autoseg.dataset_summary import summary_lines
from autoseg.errors import Problem
from autoseg.integrity import inspect_dataset
from autoseg.paths import resolve_dataset_name


def print_problems(problems: list[Problem]) -> int:
    """Print one line per problem and a count; returns the number of errors."""
    for problem in problems:
        print(problem)
    errors = sum(p.is_error for p in problems)
    warnings = len(problems) - errors
    print(f"{errors} error(s), {warnings} warning(s).")
    return errors


def verify_datasets(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Check every named dataset; exit code 1 when any has errors."""
    roots = roots_from(args, env)
    failed = False
    for identifier in args.datasets:
        name = resolve_dataset_name(identifier, roots)
        folder = roots.require_raw() / name
        print(f"Verifying {folder}")
        report = inspect_dataset(folder, args.num_processes, env, progress_from(args))
        failed |= print_problems(report.problems) > 0
        print("\n".join(summary_lines(report)))
    return 1 if failed else 0


def _convert_msd(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    target = convert_msd(
        Path(args.input), roots_from(args, env).require_raw(), args.overwrite_id, args.num_processes
    )
    print(f"Converted to {target}")
    return 0


def _convert_old(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    target = convert_old_dataset(
        Path(args.input), roots_from(args, env).require_raw(), args.output_name
    )
    print(f"Converted to {target}")
    return 0


def register(commands: Any) -> None:
    verify = commands.add_parser(
        "verify", help="check a raw dataset and list every problem (one line each)"
    )
    add_dataset_argument(verify)
    verify.add_argument("-np", dest="num_processes", type=int, default=default_processes())
    add_root_arguments(verify)
    add_progress_arguments(verify)
    verify.set_defaults(handler=verify_datasets)

    msd = commands.add_parser(
        "convert_msd", help="convert a Medical Segmentation Decathlon task folder"
    )
    msd.add_argument("-i", dest="input", required=True, help="the TaskXX_Name folder")
    msd.add_argument(
        "-overwrite_id", type=int, default=None, help="dataset id instead of the task's"
    )
    msd.add_argument("-np", dest="num_processes", type=int, default=default_processes())
    add_root_arguments(msd)
    msd.set_defaults(handler=_convert_msd)

    old = commands.add_parser("convert_old_dataset", help="convert an nnU-Net v1 task folder")
    old.add_argument("input", help="the v1 TaskXXX_Name folder")
    old.add_argument("output_name", help="new dataset name, e.g. Dataset104_Liver")
    add_root_arguments(old)
    old.set_defaults(handler=_convert_old)
