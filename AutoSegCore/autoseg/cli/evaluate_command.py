"""``autoseg evaluate REF PRED -djfile dataset.json``: nnUNetv2_evaluate_folder.

Dice, IoU and the confusion counts per label (or region) for every predicted case, their means and
the foreground mean, written to ``summary.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoseg.cli.common import default_processes
from autoseg.dataset import load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.evaluation import evaluate_folders


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "evaluate",
        aliases=["evaluate_folder"],
        help="compare a folder of predictions with reference label files (summary.json)",
        description=__doc__,
    )
    parser.add_argument("reference", help="folder with the reference label files")
    parser.add_argument("prediction", help="folder with the predicted label files")
    parser.add_argument(
        "-djfile",
        "--dataset-json",
        dest="dataset_json",
        required=True,
        help="dataset.json with the labels (and file ending)",
    )
    parser.add_argument(
        "-o", dest="output", default=None, help="summary file (default PRED/summary.json)"
    )
    parser.add_argument("-np", dest="num_processes", type=int, default=default_processes())
    parser.add_argument(
        "--chill",
        action="store_true",
        help="evaluate only the predicted cases (allow missing ones)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    reference, prediction = Path(args.reference), Path(args.prediction)
    for folder in (reference, prediction):
        if not folder.is_dir():
            raise AutoSegError(f"{folder}: folder not found")
    dataset = load_dataset_json(Path(args.dataset_json))
    summary = evaluate_folders(
        reference,
        prediction,
        dataset.labels,
        dataset.file_ending,
        output_file=Path(args.output) if args.output else None,
        num_processes=args.num_processes,
        allow_missing=args.chill,
        reader=dataset.reader_override,
    )
    for key, metrics in sorted(summary["mean"].items()):
        print(
            f"  {dataset.labels.name_of(int(key)) if key.isdigit() else key:<20} "
            f"Dice {metrics['Dice']:.4f}  IoU {metrics['IoU']:.4f}"
        )
    print(f"Mean foreground Dice: {summary['foreground_mean']['Dice']:.4f}")
    print(f"Summary: {Path(args.output) if args.output else prediction / 'summary.json'}")
    return 0
