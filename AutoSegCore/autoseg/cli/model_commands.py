"""``autoseg ensemble``, ``export_model`` and ``import_model``: combining and sharing trained models."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from autoseg.cli.common import add_root_arguments, default_processes, roots_from
from autoseg.dataset import load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.model_sharing import ExportOptions, export_model, import_model
from autoseg.paths import make_folder, resolve_dataset_name
from autoseg.plans import Plans
from autoseg.results_layout import FINAL_CHECKPOINT, PLANS_FILE

_NNUNET_USAGE = (
    "nnUNetv2_install_pretrained_model_from_zip ZIP, then "
    "nnUNetv2_predict -d D -c C -f F -tr nnUNetTrainer -p PLANS"
)


def find_beside(folder: Path, name: str, explicit: str | None) -> Path:
    """``name`` given explicitly, or found in ``folder`` or up to two folders above it (a fold's
    validation folder keeps plans.json and dataset.json in its model folder)."""
    if explicit:
        return Path(explicit)
    for candidate in (folder, folder.parent, folder.parent.parent):
        if (candidate / name).is_file():
            return candidate / name
    raise AutoSegError(
        f"{folder}: no {name} in it or above it; pass it with -{name.split('.', maxsplit=1)[0]}_json FILE"
    )


def _ensemble(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from autoseg.inference.ensemble import EnsembleTarget, ensemble_folders  # noqa: PLC0415

    first = Path(args.inputs[0])
    dataset = load_dataset_json(find_beside(first, "dataset.json", args.dataset_json))
    plans = Plans.load(find_beside(first, PLANS_FILE, args.plans_json))
    target = EnsembleTarget(
        output_dir=make_folder(args.output, "the output folder (-o)"),
        labels=dataset.labels,
        file_ending=dataset.file_ending,
        reader_writer=plans.image_reader_writer,
        save_npz=args.save_npz,
    )
    written = ensemble_folders([Path(f) for f in args.inputs], target, args.num_processes)
    print(f"Ensembled {len(written)} case(s) from {len(args.inputs)} folders into {args.output}")
    return 0


def _export(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    roots = roots_from(args, env)
    dataset_dir = roots.require_results() / resolve_dataset_name(args.dataset, roots)
    options = ExportOptions(
        configurations=args.configurations,
        folds=args.folds,
        trainer=args.trainer,
        plans=args.plans,
        include_validation=args.include_validation,
        checkpoint=args.checkpoint,
    )
    make_folder(Path(args.output).parent, "the folder of the zip (-o)")
    if args.format == "nnunet":
        from autoseg.interop.nnunet_export import export_nnunet_model  # noqa: PLC0415 (torch)

        if args.include_validation:
            raise AutoSegError(
                "--include_validation cannot be combined with --format nnunet (the nnU-Net zip "
                "holds what nnunetv2 runs: plans, dataset.json, checkpoints, post-processing). "
                "Fix: leave it out, or export the validation in AutoSeg's format."
            )

        path = export_nnunet_model(dataset_dir, Path(args.output), options)
        print(f"Exported {dataset_dir.name} to {path} for nnU-Net v2 ({_NNUNET_USAGE})")
        return 0
    path = export_model(dataset_dir, Path(args.output), options)
    print(f"Exported {dataset_dir.name} to {path}")
    return 0


def _import(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    roots = roots_from(args, env)
    folders = import_model(Path(args.zip), roots.require_results(), overwrite=args.overwrite)
    for folder in folders:
        print(f"Imported {folder}")
    return 0


def register(commands: Any) -> None:
    ensemble = commands.add_parser(
        "ensemble", help="average the probabilities of several prediction folders"
    )
    ensemble.add_argument("-i", dest="inputs", nargs="+", required=True, metavar="FOLDER")
    ensemble.add_argument("-o", dest="output", required=True, metavar="FOLDER")
    ensemble.add_argument("-np", dest="num_processes", type=int, default=default_processes())
    ensemble.add_argument("--save_npz", action="store_true", help="also save the averages")
    ensemble.add_argument("-dataset_json", default=None, help="default: next to the inputs")
    ensemble.add_argument("-plans_json", default=None, help="default: next to the inputs")
    ensemble.set_defaults(handler=_ensemble)

    export = commands.add_parser(
        "export_model", aliases=["export_model_to_zip"], help="zip trained models for sharing"
    )
    export.add_argument("-d", dest="dataset", required=True, help="dataset id or name")
    export.add_argument("-o", dest="output", required=True, help="zip file to write (new)")
    export.add_argument("-c", dest="configurations", nargs="+", default=None)
    export.add_argument("-f", dest="folds", nargs="+", default=None)
    export.add_argument("-tr", dest="trainer", default="AutoSegTrainer")
    export.add_argument("-p", dest="plans", default="AutoSegPlans")
    export.add_argument("-chk", dest="checkpoint", default=FINAL_CHECKPOINT)
    export.add_argument("--include_validation", "--exp_cv_preds", action="store_true")
    export.add_argument(
        "--format",
        choices=("autoseg", "nnunet"),
        default="autoseg",
        help="autoseg: AutoSeg's zip (import_model). nnunet: a zip nnunetv2 runs with its own code "
        f"({_NNUNET_USAGE}); AutoSeg's models are exported as trainer nnUNetTrainer with their "
        "plans name, in nnU-Net's plans and checkpoint format. No postprocessing.pkl is written "
        "(nnUNetv2_predict does not need it); the rules are in postprocessing.json",
    )
    add_root_arguments(export)
    export.set_defaults(handler=_export)

    imported = commands.add_parser(
        "import_model",
        aliases=["install_pretrained_model_from_zip"],
        help="unpack a model zip into the results folder",
    )
    imported.add_argument("zip", help="the model zip")
    imported.add_argument("--overwrite", action="store_true", help="replace existing files")
    add_root_arguments(imported)
    imported.set_defaults(handler=_import)
