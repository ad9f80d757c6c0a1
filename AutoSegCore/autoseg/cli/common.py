"""Arguments and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from autoseg.paths import DataRoots
from autoseg.progress import JsonLinesProgress, ProgressCallback, TextProgressBar, no_progress


def default_processes() -> int:
    """Workers for per-case pools: every core, but at most 8 (more only costs memory)."""
    return max(1, min(8, os.cpu_count() or 1))


def add_root_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data folders (default: AUTOSEG_* or nnUNet_* variables)")
    group.add_argument(
        "--raw", metavar="FOLDER", help="raw datasets root (AUTOSEG_RAW / nnUNet_raw)"
    )
    group.add_argument(
        "--preprocessed",
        metavar="FOLDER",
        help="preprocessed data root (AUTOSEG_PREPROCESSED / nnUNet_preprocessed)",
    )
    group.add_argument(
        "--results", metavar="FOLDER", help="results root (AUTOSEG_RESULTS / nnUNet_results)"
    )


def add_progress_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        choices=("bar", "json", "none"),
        default="bar",
        help="progress display: a text bar, JSON lines on stdout (for Slicer), or nothing",
    )
    parser.add_argument(
        "--no_pbar",
        action="store_const",
        dest="progress",
        const="none",
        help="same as --progress none",
    )


def add_dataset_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-d",
        dest="datasets",
        nargs="+",
        required=True,
        metavar="DATASET",
        help="dataset id(s) or name(s), e.g. 4, 004 or Dataset004_Hippocampus",
    )


def roots_from(args: argparse.Namespace, env: Mapping[str, str]) -> DataRoots:
    """Flags win over AUTOSEG_* variables, which win over nnUNet_* variables."""
    return DataRoots.from_env(env).with_overrides(
        raw=getattr(args, "raw", None),
        preprocessed=getattr(args, "preprocessed", None),
        results=getattr(args, "results", None),
    )


def progress_from(args: argparse.Namespace) -> ProgressCallback:
    choice = getattr(args, "progress", "bar")
    if choice == "json":
        return JsonLinesProgress()
    if choice == "none":
        return no_progress
    return TextProgressBar()
