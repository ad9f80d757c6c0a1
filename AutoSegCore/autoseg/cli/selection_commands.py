"""``autoseg find_best_configuration``, ``apply_postprocessing`` and ``determine_postprocessing``.

find_best_configuration compares the trained configurations (and their pairs as ensembles) on
cross-validation, chooses post-processing for the best and prints the exact commands to predict
new images with it (also saved as inference_instructions.txt in the dataset's results folder).
Without -c, every default configuration that finished the validation of the chosen folds is used;
a configuration named with -c must be trained.

Post-processing rules are JSON (postprocessing.json); pickle files are never read, so nnU-Net's
``-pp_pkl_file`` is answered with the JSON file to use instead.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from autoseg.cli.common import add_root_arguments, default_processes, roots_from
from autoseg.cli.model_commands import find_beside
from autoseg.cli.predict_command import trainer_folder_name
from autoseg.dataset import load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.model_selection import find_best_configuration, unfinished_folds
from autoseg.paths import make_folder, resolve_dataset_name
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.postprocessing import (
    POSTPROCESSING_FILE,
    Postprocessing,
    apply_postprocessing_folder,
    determine_postprocessing,
)
from autoseg.selection_report import SelectionResult
from autoseg.training.job import model_folder_name

DEFAULT_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")
DEFAULT_FOLDS = (0, 1, 2, 3, 4)


def _fold(text: str) -> int:
    if text.strip().isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(
        f"fold {text!r} is not a cross-validation fold; use numbers such as 0 1 2 3 4 "
        "(the 'all' model has no validation cases to compare)"
    )


def _trained(results_dir: Path, args: argparse.Namespace, trainer: str) -> list[str]:
    """The configurations to compare: those given with -c (each must be trained) or the trained
    ones among the defaults; a configuration is trained when every chosen fold validated."""
    explicit = args.configurations is not None
    trained, problems = [], []
    for configuration in dict.fromkeys(args.configurations or DEFAULT_CONFIGURATIONS):
        folder = results_dir / model_folder_name(trainer, args.plans, configuration)
        missing = unfinished_folds(folder, args.folds) if folder.is_dir() else list(args.folds)
        if missing:
            problems.append(f"{configuration} (folds {' '.join(map(str, missing))})")
        else:
            trained.append(configuration)
    if (explicit and problems) or not trained:
        raise AutoSegError(
            f"{results_dir}: no finished validation for {', '.join(problems)} with trainer "
            f"{trainer} and plans {args.plans}. Fix: train those folds (autoseg train D CFG FOLD "
            "--npz), or choose trained configurations (-c) and folds (-f)."
        )
    return trained


def _score(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _report(result: SelectionResult, folds: Sequence[int]) -> None:
    print(f"Cross-validation foreground mean Dice (folds {' '.join(map(str, folds))}):")
    width = max(len(c.name) for c in result.candidates)
    for candidate in result.candidates:
        print(f"  {candidate.name:<{width}}  {_score(candidate.score)}")
    for note in result.notes:
        print(f"note: {note}")
    rules = ", ".join(
        rule.kind + ("" if rule.region is None else f" {list(rule.region)}")
        for rule in result.postprocessing.rules
    )
    print(
        f"Best: {result.best.name}, {_score(result.score_before_postprocessing)} -> "
        f"{_score(result.score_after_postprocessing)} with post-processing ({rules or 'none'})"
    )
    print(f"Post-processing: {result.postprocessing_file}")
    print(f"Written: {result.information_file}, {result.instructions_file}\n")
    print(result.instructions, end="")


def _find_best(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    roots = roots_from(args, env)
    name = resolve_dataset_name(args.dataset, roots)
    results_dir = roots.require_results() / name
    trainer = trainer_folder_name(args.trainer)
    trained = _trained(results_dir, args, trainer)
    make_folder(results_dir, "the dataset's results folder (--results)")  # it gets the reports
    result = find_best_configuration(
        results_dir,
        roots.require_preprocessed() / name,
        trained,
        folds=args.folds,
        trainer=trainer,
        plans=args.plans,
        allow_ensembling=not args.disable_ensembling,
        num_processes=args.num_processes,
    )
    _report(result, sorted(set(args.folds)))
    return 0


def _apply(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    if args.pp_pkl_file is not None:
        given = Path(args.pp_pkl_file)
        beside = given.with_name(POSTPROCESSING_FILE)
        missing = "" if beside.is_file() else " (not there yet: run find_best_configuration)"
        raise AutoSegError(
            f"-pp_pkl_file {given}: AutoSeg never reads pickle files (loading one can run "
            f"arbitrary code). Fix: pass the JSON rules instead: -pp {beside}{missing}"
        )
    postprocessing = Postprocessing.load(Path(args.pp))
    input_dir = Path(args.input)
    dataset = load_dataset_json(find_beside(input_dir, "dataset.json", args.dataset_json))
    written = apply_postprocessing_folder(
        input_dir,
        make_folder(args.output, "the output folder (-o)"),
        postprocessing,
        dataset.file_ending,
        num_processes=args.num_processes,
    )
    print(f"Post-processed {len(written)} case(s) into {args.output}")
    return 0


def _determine(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    prediction_dir = Path(args.input)
    dataset = load_dataset_json(find_beside(prediction_dir, "dataset.json", args.dataset_json))
    result = determine_postprocessing(
        prediction_dir,
        Path(args.reference),
        dataset.labels,
        dataset.file_ending,
        num_processes=args.num_processes,
    )
    before, after = (
        s.get("foreground_mean", {}).get("Dice", math.nan) for s in (result.before, result.after)
    )
    print(f"Rules: {', '.join(r.kind for r in result.rules) or 'none'}")
    print(f"Foreground mean Dice {_score(before)} -> {_score(after)}")
    print(f"Written: {prediction_dir.parent / POSTPROCESSING_FILE}")
    return 0


def _add_json_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-np", dest="num_processes", type=int, default=default_processes())
    parser.add_argument("-dataset_json", default=None, help="default: in or above the input folder")
    parser.add_argument(
        "-plans_json", default=None, help="accepted for nnU-Net compatibility (not needed)"
    )


def register(commands: Any) -> None:
    best = commands.add_parser(
        "find_best_configuration",
        help="choose the best configuration or ensemble and its post-processing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    best.add_argument("dataset", help="dataset id or name, e.g. 4 or Dataset004_Hippocampus")
    best.add_argument("-c", dest="configurations", nargs="+", default=None, metavar="CFG")
    best.add_argument("-f", dest="folds", nargs="+", type=_fold, default=list(DEFAULT_FOLDS))
    best.add_argument("-p", dest="plans", default=DEFAULT_PLANS_NAME)
    best.add_argument("-tr", dest="trainer", default=None, help="default AutoSegTrainer")
    best.add_argument("-np", dest="num_processes", type=int, default=default_processes())
    best.add_argument("--disable_ensembling", action="store_true", help="single models only")
    add_root_arguments(best)
    best.set_defaults(handler=_find_best)

    apply = commands.add_parser(
        "apply_postprocessing", help="apply postprocessing.json rules to a prediction folder"
    )
    apply.add_argument("-i", dest="input", required=True, metavar="FOLDER")
    apply.add_argument("-o", dest="output", required=True, metavar="FOLDER")
    rules = apply.add_mutually_exclusive_group(required=True)
    rules.add_argument("-pp", dest="pp", metavar="FILE", help="postprocessing.json")
    rules.add_argument("-pp_pkl_file", "--pp_pkl_file", dest="pp_pkl_file", help=argparse.SUPPRESS)
    _add_json_arguments(apply)
    apply.set_defaults(handler=_apply)

    determine = commands.add_parser(
        "determine_postprocessing",
        help="choose post-processing rules on predictions with references",
    )
    determine.add_argument("-i", dest="input", required=True, metavar="PRED")
    determine.add_argument("-ref", dest="reference", required=True, metavar="GT")
    _add_json_arguments(determine)
    determine.set_defaults(handler=_determine)
