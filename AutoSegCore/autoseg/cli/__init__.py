"""The ``autoseg`` command line: the composition root that reads argv and the environment.

Sub-commands and flags follow nnU-Net v2 (``nnUNetv2_plan_and_preprocess -d 4`` becomes
``autoseg plan_and_preprocess -d 4``). User mistakes end with a one-line message and exit code 2,
failed checks with their list of problems and exit code 1, never with a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from autoseg import __version__
from autoseg.cli import (
    data_commands,
    demo_command,
    evaluate_command,
    listing_command,
    model_commands,
    planning_commands,
    predict_command,
    selection_commands,
    train_command,
)
from autoseg.errors import AutoSegError, ProblemsFound

EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoseg",
        description="Self-configuring medical image segmentation (the nnU-Net v2 method).",
    )
    parser.add_argument("--version", action="version", version=f"autoseg {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (
        data_commands,
        planning_commands,
        train_command,
        evaluate_command,
        model_commands,
        listing_command,
        predict_command,
        selection_commands,
        demo_command,
    ):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args, dict(os.environ)) or 0)
    except ProblemsFound as problems:
        print(problems, file=sys.stderr)
        return EXIT_PROBLEMS
    except AutoSegError as error:
        print(f"autoseg {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        print(f"autoseg {args.command}: error: {describe_os_error(error)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"autoseg {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def describe_os_error(error: OSError) -> str:
    """One line for a failed file operation no command foresaw (a full disk, a drive removed
    mid-run): the path, the system's reason and where to look, never a traceback."""
    where = os.fspath(error.filename) if error.filename is not None else "a file operation"
    reason = error.strerror or str(error)
    return (
        f"{where}: {reason}. Fix: check that the drive is present, writable and has free space, "
        "then run the command again."
    )
