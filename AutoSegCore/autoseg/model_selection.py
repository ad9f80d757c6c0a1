"""Model selection: which configuration (or pair of configurations) to use, and its post-processing.

Each trained configuration is judged on its cross-validation predictions (every validation case was
predicted by the one fold that did not train on it), so the choice uses no case twice. Pairs are
ensembled by averaging the saved probabilities (``train --npz``), because averaging often beats
either model alone. The best candidate by foreground mean Dice wins (ties keep the earlier one:
single models come before ensembles, so a pair must be strictly better to be worth twice the
prediction time); then post-processing is chosen on its predictions and everything a user needs
to reproduce the result is written as ``inference_information.json`` and the exact commands in
``inference_instructions.txt``.

Folder names carry the folds (``crossval_results_folds_0_1``), so any subset of folds can be
evaluated without mixing with another. No torch here: numpy, SciPy and SimpleITK only.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoseg.atomic import write_atomic, write_json_atomic
from autoseg.dataset import load_dataset_json
from autoseg.errors import AutoSegError
from autoseg.evaluation import SUMMARY_FILE, evaluate_folders
from autoseg.image_io import choose_reader_writer
from autoseg.inference.ensemble import EnsembleTarget, ensemble_folders
from autoseg.labels import LabelSpec
from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.plans import Plans
from autoseg.postprocessing import (
    POSTPROCESSED_DIR,
    POSTPROCESSING_FILE,
    Postprocessing,
    determine_postprocessing,
)
from autoseg.results_layout import (
    DATASET_JSON,
    ENSEMBLES_DIR,
    INFORMATION_FILE,
    INSTRUCTIONS_FILE,
    PLANS_FILE,
    crossval_folder_name,
    fold_folder_name,
    model_folder_name,
)
from autoseg.selection_report import (
    Candidate,
    SelectionResult,
    SelectionSetup,
    information_json,
    instructions_text,
    model_dir,
)
from autoseg.training.job import TRAINER_NAME

__all__ = [
    "ENSEMBLES_DIR",
    "INFORMATION_FILE",
    "INSTRUCTIONS_FILE",
    "Candidate",
    "SelectionResult",
    "accumulate_cv_results",
    "crossval_folder_name",
    "ensemble_folder_name",
    "find_best_configuration",
    "has_probabilities",
    "unfinished_folds",
]

_VALIDATION = "validation"


def _folds(folds: Sequence[int]) -> tuple[int, ...]:
    """Sorted distinct folds, so the same subset always gives the same folder names."""
    normalized = tuple(sorted({int(f) for f in folds}))
    if not normalized:
        raise AutoSegError(
            "no folds given. Fix: name the cross-validation folds, e.g. -f 0 1 2 3 4"
        )
    return normalized


def _folds_text(folds: Sequence[int]) -> str:
    return "_".join(str(f) for f in _folds(folds))


def ensemble_folder_name(models: Sequence[str], folds: Sequence[int]) -> str:
    """``ensemble___<m1>___<m2>___0_1_2_3_4`` (models are model folder names)."""
    return "___".join(["ensemble", *models, _folds_text(folds)])


def unfinished_folds(model_dir: Path, folds: Sequence[int]) -> list[int]:
    """Folds whose final validation did not finish (no ``fold_k/validation/summary.json``)."""
    return [
        f
        for f in _folds(folds)
        if not (model_dir / fold_folder_name(f) / _VALIDATION / SUMMARY_FILE).is_file()
    ]


def _case_files(folder: Path, file_ending: str) -> dict[str, Path]:
    """Case id -> label file of every prediction in ``folder``."""
    files = [
        p for p in folder.glob(f"*{file_ending}") if p.is_file() and not p.name.startswith(".")
    ]
    return {p.name[: -len(file_ending)]: p for p in files if p.name != SUMMARY_FILE}


def has_probabilities(folder: Path, file_ending: str) -> bool:
    """Whether every prediction in ``folder`` has its ``CASE.npz`` and ``CASE.json``."""
    cases = _case_files(Path(folder), file_ending)
    return bool(cases) and all(
        (folder / f"{c}.npz").is_file() and (folder / f"{c}.json").is_file() for c in cases
    )


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link where possible (no copy of large probability files), else a copy. Training
    replaces its files atomically (a new inode), so a link never changes after the fact."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _fold_cases(model_dir: Path, fold: int, file_ending: str) -> dict[str, Path]:
    validation = model_dir / fold_folder_name(fold) / _VALIDATION
    if not (validation / SUMMARY_FILE).is_file():
        raise AutoSegError(
            f"{validation}: no finished validation (summary.json missing). Fix: train fold "
            f"{fold}, or re-run only its validation with `autoseg train D CFG {fold} --val --npz`."
        )
    cases = _case_files(validation, file_ending)
    if not cases:
        raise AutoSegError(
            f"{validation}: no predictions ending with {file_ending!r}. Fix: re-run the "
            f"validation with `autoseg train D CFG {fold} --val --npz`."
        )
    return cases


def accumulate_cv_results(
    model_dir: Path,
    folds: Sequence[int],
    gt_dir: Path,
    labels: LabelSpec,
    file_ending: str,
    num_processes: int = 1,
) -> dict[str, Any]:
    """Gather the folds' validation predictions (with their npz/json when present) into
    ``<model_dir>/crossval_results_folds_<folds>/`` and evaluate them (summary.json there).

    The folder is derived data and rebuilt on every call, so no case of an earlier run stays in it.
    A case predicted by two folds means overlapping splits and is an error.
    """
    model_dir, folds = Path(model_dir), _folds(folds)
    origin: dict[str, int] = {}
    sources: list[tuple[str, Path]] = []
    for fold in folds:
        for case, file in sorted(_fold_cases(model_dir, fold, file_ending).items()):
            if case in origin:
                raise AutoSegError(
                    f"{model_dir}: case {case} was predicted by fold {origin[case]} and fold "
                    f"{fold}; the splits overlap. Fix: train every fold with the same "
                    "splits_final.json, or leave one of these folds out (-f)."
                )
            origin[case] = fold
            sources.append((case, file))
    target = model_dir / crossval_folder_name(folds)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for case, file in sources:
        _link_or_copy(file, target / file.name)
        for extra in (file.parent / f"{case}.npz", file.parent / f"{case}.json"):
            if extra.is_file():
                _link_or_copy(extra, target / extra.name)
    return evaluate_folders(
        gt_dir, target, labels, file_ending, num_processes=num_processes, allow_missing=True
    )


def _score(summary: dict[str, Any]) -> float:
    return float(summary["foreground_mean"]["Dice"])


def _better(score: float, best: float) -> bool:
    """Strictly better; NaN never wins and anything beats NaN."""
    return not math.isnan(score) and (math.isnan(best) or score > best)


def _reader_writer(model_dir: Path, setup: SelectionSetup, example: Path) -> str:
    """The writer the model's plans chose; from the file ending when plans.json is absent."""
    plans_file = model_dir / PLANS_FILE
    if plans_file.is_file():
        return Plans.load(plans_file).image_reader_writer
    return choose_reader_writer(setup.file_ending, example_file=example).name


def _ensembles(
    singles: Sequence[Candidate], setup: SelectionSetup
) -> tuple[list[Candidate], list[str]]:
    """Every unordered pair of models with probabilities, averaged and evaluated."""
    notes: list[str] = []
    with_npz = [has_probabilities(c.folder, setup.file_ending) for c in singles]
    usable = [c for c, ok in zip(singles, with_npz, strict=True) if ok]
    lacking = [c.name for c, ok in zip(singles, with_npz, strict=True) if not ok]
    if lacking and len(singles) > 1:
        notes.append(
            f"no ensembles with {', '.join(lacking)}: their validation has no .npz probabilities "
            "for every case. Fix: re-run the validation with `autoseg train D CFG FOLD --val --npz`."
        )
    ensembles: list[Candidate] = []
    for first, second in itertools.combinations(usable, 2):
        if set(_case_files(first.folder, setup.file_ending)) != set(
            _case_files(second.folder, setup.file_ending)
        ):
            notes.append(f"no ensemble of {first.name} and {second.name}: different cases")
            continue
        folder = (
            setup.results_dir
            / ENSEMBLES_DIR
            / ensemble_folder_name((first.name, second.name), setup.folds)
        )
        if folder.exists():
            shutil.rmtree(folder)
        example = next(iter(_case_files(first.folder, setup.file_ending).values()))
        writer = _reader_writer(first.folder.parent, setup, example)
        target = EnsembleTarget(folder, setup.labels, setup.file_ending, writer)
        ensemble_folders([first.folder, second.folder], target, setup.num_processes)
        summary = _evaluate(folder, setup)
        configurations = first.configurations + second.configurations
        ensembles.append(Candidate(folder.name, folder, configurations, _score(summary)))
    return ensembles, notes


def _evaluate(folder: Path, setup: SelectionSetup) -> dict[str, Any]:
    return evaluate_folders(
        setup.gt_dir,
        folder,
        setup.labels,
        setup.file_ending,
        num_processes=setup.num_processes,
        allow_missing=True,
    )


def _pick_best(candidates: Sequence[Candidate]) -> Candidate:
    best = candidates[0]
    for candidate in candidates[1:]:
        if _better(candidate.score, best.score):
            best = candidate
    return best


def _postprocess(best: Candidate, setup: SelectionSetup) -> tuple[Postprocessing, Path]:
    """Choose post-processing on the best predictions; postprocessing.json goes into its folder.

    determine_postprocessing writes its file into the parent of the predictions; for an ensemble
    that parent is shared by every ensemble, so the file is moved into the candidate's own folder
    and whatever was in the parent before is put back.
    """
    written = best.folder.parent / POSTPROCESSING_FILE
    previous = written.read_bytes() if written.is_file() else None
    result = determine_postprocessing(
        best.folder,
        setup.gt_dir,
        setup.labels,
        setup.file_ending,
        num_processes=setup.num_processes,
        output_dir=best.folder / POSTPROCESSED_DIR,
    )
    target = result.save(best.folder / POSTPROCESSING_FILE)
    if previous is None:
        written.unlink(missing_ok=True)
    else:
        write_atomic(written, lambda file: file.write(previous))
    return result, target


def _single_model(configuration: str, setup: SelectionSetup) -> Candidate:
    """Accumulate and score one configuration's cross-validation predictions."""
    folder = model_dir(setup, configuration)
    summary = accumulate_cv_results(
        folder, setup.folds, setup.gt_dir, setup.labels, setup.file_ending, setup.num_processes
    )
    crossval = folder / crossval_folder_name(setup.folds)
    return Candidate(folder.name, crossval, (configuration,), _score(summary))


def _dataset_json(model_dir: Path, preprocessed_dir: Path) -> Path:
    """The model's dataset.json (what it was trained with), else the preprocessed one."""
    for candidate in (model_dir / DATASET_JSON, preprocessed_dir / DATASET_JSON):
        if candidate.is_file():
            return candidate
    raise AutoSegError(
        f"{model_dir}: no dataset.json in it or in {preprocessed_dir}. "
        "Fix: run plan_and_preprocess for this dataset (training copies dataset.json)."
    )


def _gt_dir(preprocessed_dir: Path, dataset: str) -> Path:
    gt_dir = preprocessed_dir / "gt_segmentations"
    if not gt_dir.is_dir():
        raise AutoSegError(
            f"{gt_dir}: reference segmentations not found. Fix: run "
            f"`autoseg plan_and_preprocess -d {dataset}` (it writes gt_segmentations)."
        )
    return gt_dir


def find_best_configuration(  # noqa: PLR0913 - the agreed public signature; options keyword-only
    results_dataset_dir: Path,
    preprocessed_dataset_dir: Path,
    configurations: Sequence[str],
    *,
    folds: Sequence[int] = (0, 1, 2, 3, 4),
    trainer: str = TRAINER_NAME,
    plans: str = DEFAULT_PLANS_NAME,
    allow_ensembling: bool = True,
    num_processes: int = 1,
) -> SelectionResult:
    """Compare the configurations (and every pair as an ensemble) on cross-validation, choose
    post-processing for the best, and write inference_information.json and
    inference_instructions.txt into ``results_dataset_dir``.

    Every configuration must have finished the validation of every fold in ``folds``.
    """
    results_dir, preprocessed_dir = Path(results_dataset_dir), Path(preprocessed_dataset_dir)
    configurations = list(dict.fromkeys(configurations))
    if not configurations:
        raise AutoSegError("find_best_configuration: no configurations given. Fix: pass -c CFG")
    first_model = results_dir / model_folder_name(trainer, plans, configurations[0])
    dataset_json = _dataset_json(first_model, preprocessed_dir)
    dataset = load_dataset_json(dataset_json)
    gt_dir = _gt_dir(preprocessed_dir, results_dir.name)
    setup = SelectionSetup(
        results_dir,
        gt_dir,
        dataset.labels,
        dataset.file_ending,
        _folds(folds),
        num_processes=num_processes,
        trainer=trainer,
        plans=plans,
        ensembling=allow_ensembling,
    )
    singles = [_single_model(configuration, setup) for configuration in configurations]
    ensembles, notes = _ensembles(singles, setup) if allow_ensembling else ([], [])
    best = _pick_best((*singles, *ensembles))
    postprocessing, pp_file = _postprocess(best, setup)
    instructions = instructions_text(best, setup, pp_file, dataset_json)
    result = SelectionResult(
        (*singles, *ensembles),
        best,
        postprocessing,
        pp_file,
        results_dir / INFORMATION_FILE,
        results_dir / INSTRUCTIONS_FILE,
        instructions,
        tuple(notes),
    )
    write_json_atomic(result.information_file, information_json(result, setup))
    write_atomic(result.instructions_file, lambda file: file.write(instructions.encode("utf-8")))
    return result
