"""``autoseg train DATASET CONFIGURATION FOLD [FOLD ...]``: nnU-Net's nnUNetv2_train, plus settings.

Every training knob is a setting (``--epochs 5``, ``--settings run.json``, ``--set initial_lr=1e-3``)
instead of a trainer subclass. nnU-Net's epoch-only trainer names (``-tr nnUNetTrainer_5epochs``) are
understood. Several folds are trained one after another, or one per GPU with ``-num_gpus``.

Fine-tuning: ``--from-model MODEL_FOLDER`` starts from a trained model's weights (see
training/warm_start.py) on a dataset planned with ``plan_and_preprocess --plans-from MODEL_FOLDER``,
with a short schedule and a low learning rate unless ``--epochs`` / ``--initial-lr`` say otherwise.

Stopping: create ``STOP_REQUEST`` in a fold folder (the Slicer module does this on Cancel): the run
finishes its iteration, writes checkpoint_latest.pth and exits 0; ``--c`` continues it. Ctrl+C
saves the same way and exits 130. A fold that another run trains is refused (``training.lock``).
``--progress json`` also prints every event of events.jsonl as a JSON line on stdout.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from typing import Any

from autoseg.cli.common import add_progress_arguments, add_root_arguments, roots_from
from autoseg.errors import AutoSegError
from autoseg.progress import write_json_event
from autoseg.training.settings import TrainingSettings, parse_assignment, read_settings_file
from autoseg.training.stop_request import TrainingStopped

_EPOCH_TRAINER = re.compile(r"^nnUNetTrainer_(\d+)epochs$")
_DEFAULT_TRAINERS = ("nnUNetTrainer", "AutoSegTrainer")

# Flags that map one to one onto TrainingSettings fields (flag spellings -> field).
_SETTING_FLAGS: dict[str, tuple[str, type]] = {
    "epochs": ("--epochs", int),
    "iterations_per_epoch": ("--iterations-per-epoch", int),
    "val_iterations": ("--val-iterations", int),
    "initial_lr": ("--initial-lr", float),
    "checkpoint_every": ("--checkpoint-every", int),
    "checkpoint_minutes": ("--checkpoint-minutes", float),
    "num_workers": ("--num-workers", int),
    "val_workers": ("--val-workers", int),
    "cpu_threads": ("--cpu-threads", int),
    "seed": ("--seed", int),
    "device": ("-device", str),
    "compile": ("--compile", str),
    "amp": ("--amp", str),
}


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "train",
        help="train folds of a configuration (nnUNetv2_train)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", help="dataset id or name, e.g. 4 or Dataset004_Hippocampus")
    parser.add_argument("configuration", help="e.g. 2d, 3d_fullres, 3d_lowres, 3d_cascade_fullres")
    parser.add_argument("folds", nargs="+", metavar="FOLD", help="0-4 and/or 'all'")
    parser.add_argument("-p", dest="plans", default=None, help="plans name (default AutoSegPlans)")
    parser.add_argument("-tr", dest="trainer", default=None, help="nnU-Net trainer name (epochs)")
    parser.add_argument("--npz", action="store_true", help="also save validation probabilities")
    parser.add_argument(
        "--c", dest="resume", action="store_true", help="continue from a checkpoint"
    )
    parser.add_argument("--val", action="store_true", help="only run the final validation")
    parser.add_argument("--val_best", action="store_true", help="validate checkpoint_best.pth")
    parser.add_argument("-num_gpus", "--num-gpus", type=int, default=1, help="GPUs (DDP)")
    parser.add_argument("-pretrained_weights", "--pretrained-weights", default=None)
    parser.add_argument(
        "--from-model",
        "--from_model",
        dest="from_model",
        default=None,
        metavar="MODEL_FOLDER",
        help="fine-tune a trained model (AutoSeg or nnU-Net folder; its fold FOLD, else 'all', else "
        "0): every weight starts from it, the heads fresh when the dataset adds labels; needs the "
        "model's plans (plan_and_preprocess --plans-from); default --epochs 10%% of the model's "
        "(at least 10) and --initial-lr 1e-3",
    )
    parser.add_argument("--disable_checkpointing", action="store_true")
    parser.add_argument("--settings", default=None, metavar="FILE", help="JSON settings file")
    parser.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any training setting, e.g. --set weight_decay=1e-4 (repeatable)",
    )
    for field, (flag, kind) in _SETTING_FLAGS.items():
        spellings = [flag]
        if flag.startswith("--") and "-" in flag[2:]:
            spellings.append("--" + flag[2:].replace("-", "_"))
        parser.add_argument(*spellings, dest=field, type=kind, default=None)
    parser.add_argument("--quiet", action="store_true", help="do not echo the training log")
    add_progress_arguments(parser)
    add_root_arguments(parser)
    parser.set_defaults(handler=run)


def _trainer_settings(trainer: str | None) -> dict[str, Any]:
    if trainer is None or trainer in _DEFAULT_TRAINERS:
        return {}
    match = _EPOCH_TRAINER.match(trainer)
    if match:
        return {"epochs": int(match.group(1))}
    raise AutoSegError(
        f"-tr {trainer}: AutoSeg has no trainer classes; variants are settings. Use e.g. "
        "--epochs 100, --set initial_lr=1e-3, or --settings my_variant.json"
    )


def _flag_settings(args: argparse.Namespace) -> dict[str, Any]:
    flags = {field: getattr(args, field) for field in _SETTING_FLAGS}
    if args.disable_checkpointing:
        flags["save_checkpoints"] = False
    if getattr(args, "from_model", None):
        flags["from_model"] = args.from_model
    return flags


def settings_from(args: argparse.Namespace) -> TrainingSettings:
    """Defaults <- settings file <- -tr epoch name <- --set <- explicit flags (last wins)."""
    settings = TrainingSettings()
    if args.settings:
        settings = TrainingSettings.load(args.settings)
    settings = settings.updated(_trainer_settings(args.trainer), "-tr")
    settings = settings.updated(dict(parse_assignment(a) for a in args.assignments), "--set")
    return settings.updated(_flag_settings(args), "command line")


def explicit_settings(args: argparse.Namespace) -> frozenset[str]:
    """The settings the user chose (file, -tr, --set, flags): defaults such as fine-tuning's
    schedule must not replace them."""
    chosen = set(read_settings_file(args.settings)) if args.settings else set()
    chosen |= set(_trainer_settings(args.trainer))
    chosen |= {parse_assignment(a)[0] for a in args.assignments}
    chosen |= {k for k, v in _flag_settings(args).items() if v is not None}
    return frozenset(chosen)


def run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    # Imported here: it pulls in torch, which the other sub-commands never need.
    from autoseg.cli.train_launch import TrainRequest, launch  # noqa: PLC0415

    request = TrainRequest(
        dataset=args.dataset,
        configuration=args.configuration,
        folds=tuple(args.folds),
        plans_name=args.plans,
        settings=settings_from(args),
        explicit_settings=explicit_settings(args),
        roots=roots_from(args, env),
        resume=args.resume,
        validation_only=args.val or args.val_best,
        use_best=args.val_best,
        save_npz=args.npz,
        pretrained_weights=args.pretrained_weights,
        num_gpus=args.num_gpus,
        echo=None if args.quiet or args.progress == "none" else sys.stdout,
        command=describe_command(args),
        mirror=write_json_event if args.progress == "json" else None,
    )
    try:
        return launch(request, torchrun_env(env))
    except TrainingStopped as stopped:  # a stop request is a normal end: exit 0
        print(f"autoseg train: {stopped}", file=sys.stderr)
        return 0


def describe_command(args: argparse.Namespace) -> str:
    """What the fold lock tells a second run about this one (the essentials, not every flag)."""
    flags = [
        flag
        for flag, given in (
            ("--c", args.resume),
            ("--val", args.val),
            ("--val_best", args.val_best),
        )
        if given
    ]
    return " ".join(["autoseg train", args.dataset, args.configuration, *args.folds, *flags])


def torchrun_env(env: Mapping[str, str]) -> tuple[int, int, int] | None:
    """(rank, world_size, local_rank) when started by torchrun, else None."""
    if "RANK" in env and "WORLD_SIZE" in env and int(env["WORLD_SIZE"]) > 1:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0"))
    return None
