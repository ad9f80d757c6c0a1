"""``autoseg list_models``: every model and kept version under the results root, as a table or JSON.

Lists AutoSeg's and nnU-Net's model folders (``<results>/<dataset>/<trainer>__<plans>__<config>``)
and the versions kept in them (``versions/<n>``, usable with ``autoseg predict -m``), each with its
trained folds, epochs, the date it was trained and its validation Dice. ``--json`` writes the same
for programs (the Slicer panels). Reads files only: fast, and no torch.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from autoseg.cli.common import roots_from
from autoseg.model_listing import list_models, models_table
from autoseg.paths import resolve_dataset_name


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "list_models",
        help="list every trained model and kept version (folds, epochs, date, validation Dice)",
        description=__doc__,
    )
    parser.add_argument(
        "--results", metavar="FOLDER", help="results root (AUTOSEG_RESULTS / nnUNet_results)"
    )
    parser.add_argument(
        "-d", dest="dataset", default=None, metavar="DATASET", help="only this dataset (id or name)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    roots = roots_from(args, env)
    models = list_models(roots.require_results())
    if args.dataset is not None:
        name = resolve_dataset_name(args.dataset, roots)
        models = [m for m in models if m.dataset == name]
    if args.json:
        print(json.dumps({"models": [m.to_json() for m in models]}, indent=2))
    elif models:
        print(models_table(models))
    else:
        print(f"No trained models under {roots.require_results()}.")
    return 0
