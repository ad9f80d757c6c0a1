"""Preprocess a whole raw dataset for one or more configurations.

Output layout (``output_dir`` = ``preprocessed/DatasetXXX``)::

    dataset.json                 copy of the raw dataset.json (next to the plans)
    splits_final.json            copy of the raw one, if it exists (never overwritten)
    gt_segmentations/CASE<ending> copies of the training labels (used by validation/evaluation)
    <data_identifier>/CASE.*     preprocessed cases (see storage.py)

Configurations that share a ``data_identifier`` (3d_cascade_fullres reuses 3d_fullres's data) are
processed once. Re-running skips cases that are complete and current, so an interrupted run
resumes; a case whose raw files or settings changed is redone and a case no longer in the dataset
is deleted, each with one line on stderr (see :mod:`autoseg.preprocessing.freshness`). ``clean``
deletes only the folders of the requested data identifiers first.

Cases run in a "spawn" process pool (see :mod:`autoseg.parallel`); each worker reads its own images,
so only small task descriptions cross process boundaries.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoseg.atomic import atomic_path
from autoseg.case_checks import CaseRules, dataset_is_2d, load_case
from autoseg.dataset import DATASET_JSON, CaseFiles, load_dataset_json, training_cases
from autoseg.errors import AutoSegError
from autoseg.image_io import choose_reader_writer
from autoseg.parallel import map_cases
from autoseg.paths import make_folder
from autoseg.plans import Plans
from autoseg.preprocessing.case import CaseRecipe, preprocess_case
from autoseg.preprocessing.freshness import case_provenance, recipe_digest, reconcile
from autoseg.preprocessing.storage import save_case
from autoseg.progress import ProgressCallback, no_progress

GT_FOLDER = "gt_segmentations"
SPLITS_FILE = "splits_final.json"


@dataclass(frozen=True)
class _CaseTask:
    """One unit of work for a worker process (small and picklable)."""

    case: CaseFiles
    recipe: CaseRecipe
    output: Path
    file_ending: str
    reader: str
    provenance: dict[str, Any]
    rules: CaseRules


def _run_case(task: _CaseTask) -> str:
    """Worker: read, preprocess and save one case. Errors name the case and are plain AutoSegErrors
    (subclasses with custom constructors would not survive the trip back from a worker process)."""
    case_id = task.case.case_id
    try:
        reader = choose_reader_writer(task.file_ending, override=task.reader)
        case = load_case(reader, task.case, task.rules)  # verify's checks; errors stop the run
        for warning in case.warnings:
            print(warning, file=sys.stderr)
        geometry = case.geometry
        result = preprocess_case(
            case.images, case.seg, geometry.spacing, task.recipe, geometry.to_json()
        )
        save_case(task.output, case_id, result, task.provenance)
    except AutoSegError as error:
        if type(error) is AutoSegError:
            raise
        raise AutoSegError(str(error)) from None
    except Exception as error:
        raise AutoSegError(
            f"case '{case_id}': preprocessing failed ({type(error).__name__}: {error}). "
            "Fix: check this case's image and label files (readable, same shape, same geometry)."
        ) from None
    return case_id


def _copy_file_atomic(source: Path, target: Path) -> None:
    with atomic_path(target, suffix=target.suffix) as temporary:
        shutil.copyfile(source, temporary)


def _copy_if_changed(source: Path, target: Path) -> None:
    if target.is_file() and filecmp.cmp(source, target, shallow=False):
        return
    _copy_file_atomic(source, target)


def _copy_splits(raw: Path, output: Path) -> None:
    source = raw / SPLITS_FILE
    if not source.is_file():
        return
    target = output / SPLITS_FILE
    if not target.is_file():
        _copy_file_atomic(source, target)
        return
    try:
        same = json.loads(source.read_text("utf-8")) == json.loads(target.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise AutoSegError(f"{SPLITS_FILE}: not valid JSON ({error}). Fix: repair it.") from None
    if not same:
        raise AutoSegError(
            f"{target}: differs from the raw dataset's {source}. It is never overwritten, because "
            "trained folds depend on it. Fix: delete one of them (or make them identical)."
        )


def _remove_other_ground_truth(folder: Path, case_ids: set[str], ending: str) -> None:
    """Labels (and TIFF spacing files) of cases no longer in the dataset: evaluation must not
    find them."""
    suffixes = (ending, ".json") if ending.lower() in (".tif", ".tiff") else (ending,)
    for path in folder.glob("*") if folder.is_dir() else ():
        suffix = next((s for s in suffixes if path.name.endswith(s)), None)
        if suffix and not path.name.startswith(".") and path.name[: -len(suffix)] not in case_ids:
            path.unlink()


def _copy_ground_truth(
    cases: Sequence[CaseFiles], folder: Path, ending: str, progress: ProgressCallback
) -> None:
    labelled = [case for case in cases if case.label is not None]
    _remove_other_ground_truth(folder, {case.case_id for case in labelled}, ending)
    progress("copying ground truth", 0, len(labelled))
    for done, case in enumerate(labelled, start=1):
        label = Path(case.label)  # type: ignore[arg-type]
        _copy_if_changed(label, folder / f"{case.case_id}{ending}")
        sidecar = label.with_name(label.name[: -len(ending)] + ".json")  # TIFF spacing sidecar
        if ending.lower() in (".tif", ".tiff") and sidecar.is_file():
            _copy_if_changed(sidecar, folder / f"{case.case_id}.json")
        progress("copying ground truth", done, len(labelled))


def _process_counts(num_processes: int | Sequence[int], count: int) -> list[int]:
    if isinstance(num_processes, int):
        return [num_processes] * count
    counts = [int(n) for n in num_processes]
    if len(counts) != count:
        raise AutoSegError(
            f"{len(counts)} process count(s) given for {count} configuration(s). "
            "Fix: pass one number, or one per configuration."
        )
    return counts


def _preprocess_configuration(
    tasks: list[_CaseTask], folder: Path, clean: bool, processes: int, progress: ProgressCallback
) -> None:
    if clean and folder.exists():
        shutil.rmtree(folder)
    make_folder(folder, "the preprocessed data folder (--preprocessed)", check_writable=False)
    state = reconcile(folder, {task.case.case_id: task.provenance for task in tasks})
    for line in state.messages(folder):
        print(line, file=sys.stderr)  # one line per surprise, like the CLI's notes
    redo = set(state.todo)
    todo = [task for task in tasks if task.case.case_id in redo]
    stage = f"preprocessing {folder.name}"
    if not todo:
        progress(stage, len(tasks), len(tasks))
        return
    map_cases(_run_case, todo, num_processes=processes, progress=progress, stage=stage)


def preprocess_dataset(  # noqa: PLR0913 - the agreed public signature; the flags are keyword-only
    raw_dataset_dir: Path,
    output_dir: Path,
    plans: Plans,
    configuration_names: Sequence[str],
    num_processes: int | Sequence[int],
    *,
    clean: bool = False,
    progress: ProgressCallback = no_progress,
    env: Mapping[str, str] | None = None,
) -> None:
    """Preprocess every training case of a raw dataset for the given configurations.

    Args:
        raw_dataset_dir: ``raw/DatasetXXX_Name`` with dataset.json, imagesTr, labelsTr.
        output_dir: ``preprocessed/DatasetXXX_Name`` (where the plans live).
        plans: the dataset's plans.
        configuration_names: e.g. ``["2d", "3d_fullres"]``.
        num_processes: worker processes, one number or one per configuration (1 = in-process).
        clean: delete existing preprocessed data of these configurations first.
        progress: receives ``(stage, done, total)``.
        env: variables for ``$VAR`` in paths listed under dataset.json's ``dataset`` key.

    Raises:
        AutoSegError: bad dataset/plans, a conflicting splits_final.json, or a failing case.
    """
    raw, output = Path(raw_dataset_dir), Path(output_dir)
    spec = load_dataset_json(raw / DATASET_JSON, env)
    cases = training_cases(raw, spec)
    if not cases:
        raise AutoSegError(f"{raw}: no training cases found. Fix: add images to imagesTr/.")
    configs = [plans.configuration(name) for name in configuration_names]
    counts = _process_counts(num_processes, len(configs))
    reader = choose_reader_writer(spec.file_ending, cases[0].images[0], spec.reader_override)
    make_folder(output, "the preprocessed data folder (--preprocessed)")
    _copy_splits(raw, output)
    _copy_if_changed(raw / DATASET_JSON, output / DATASET_JSON)
    rules = CaseRules.for_dataset(spec, dataset_is_2d(reader, cases))
    seen: set[str] = set()
    for config, processes in zip(configs, counts, strict=True):
        if config.data_identifier in seen:
            continue
        seen.add(config.data_identifier)
        folder = output / config.data_identifier
        recipe = CaseRecipe.from_plans(plans, config.name, spec.labels)
        digest = recipe_digest(recipe, reader.name)
        tasks = [
            _CaseTask(
                c, recipe, folder, spec.file_ending, reader.name, case_provenance(c, digest), rules
            )
            for c in cases
        ]
        _preprocess_configuration(tasks, folder, clean, processes, progress)
    # after the cases passed their checks: a refused case leaves no copy of its label behind
    _copy_ground_truth(cases, output / GT_FOLDER, spec.file_ending, progress)
