"""Dataset integrity check: every problem of a raw dataset, reported in one run.

Training on a broken dataset fails late and obscurely (a stray label value becomes a crash in the loss
hours later), so this check reads every file once and reports each problem with the file and the fix.
Nothing stops at the first problem: dataset.json, the file layout, the label definition, the reader
and every case are all checked, and the per-case checks run in parallel worker processes that return
their findings instead of raising. The per-case checks are those of :mod:`autoseg.case_checks`,
which the fingerprint and preprocessing run too (there they stop at the first error); verify adds
only what needs an extra read: the raw NIfTI voxels, where ITK hides NaN and inf.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from autoseg.case_checks import CaseReport, CaseRules, dataset_is_2d, inspect_case
from autoseg.dataset import DATASET_JSON, CaseFiles, DatasetSpec, discover_cases, read_dataset_json
from autoseg.errors import AutoSegError, Problem, ProblemsFound
from autoseg.image_io import choose_reader_writer
from autoseg.nifti_values import nonfinite_problems
from autoseg.parallel import map_cases
from autoseg.progress import ProgressCallback, no_progress


@dataclass(frozen=True)
class _Context:
    """What a worker needs besides the case; small and picklable for spawn workers."""

    reader_name: str
    file_ending: str
    rules: CaseRules


@dataclass
class DatasetReport:
    """Everything verify found: the problems (dataset first, then per case) and, per checked
    case, the numbers its summary table shows."""

    problems: list[Problem] = field(default_factory=list)
    spec: DatasetSpec | None = None
    cases: dict[str, CaseReport] = field(default_factory=dict)


def _check_case(case: CaseFiles, ctx: _Context) -> CaseReport:
    reader = choose_reader_writer(ctx.file_ending, override=ctx.reader_name)
    _, report = inspect_case(reader, case, ctx.rules)
    # ITK reads NaN in NIfTI as 0; only the raw voxels show them (verify's extra read).
    for path in (*case.images, *((case.label,) if case.label is not None else ())):
        report.problems += nonfinite_problems(path)
    return report


def check_case(case: CaseFiles, ctx: _Context) -> CaseReport:
    """All findings of one case; never raises (it runs in worker processes)."""
    where = str(case.images[0]) if case.images else case.case_id
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = _check_case(case, ctx)
    except Exception as exc:
        msg = f"case {case.case_id} could not be checked: {exc}"
        fix = "Check that its files are valid images."
        return CaseReport([Problem("error", where, msg, fix, "unreadable")])
    for caught_warning in caught:
        message, _, fix = str(caught_warning.message).partition(" Fix: ")
        report.problems.append(Problem("warning", where, message, fix, "reader warning"))
    return report


def _consecutive_problems(spec: DatasetSpec, where: str) -> list[Problem]:
    values = spec.labels.expected_values
    missing = sorted(set(range(max(values) + 1)) - set(values))
    if not missing:
        return []
    msg = f"label values {list(values)} are not consecutive; {missing} are unused."
    fix = "Renumber the labels (and the label files) to 0, 1, 2, ... without gaps."
    return [Problem("error", where, msg, fix)]


def _choose_reader(spec: DatasetSpec, cases: list[CaseFiles], where: str) -> tuple[Any, list]:
    example = cases[0].images[0] if cases else None
    try:
        return choose_reader_writer(spec.file_ending, example, spec.reader_override), []
    except AutoSegError as exc:
        message, _, fix = str(exc).partition(" Fix: ")
        return None, [Problem("error", where, f"no image reader can be determined: {message}", fix)]


def inspect_dataset(
    dataset_dir: Path,
    num_processes: int = 4,
    env: Mapping[str, str] | None = None,
    progress: ProgressCallback = no_progress,
) -> DatasetReport:
    """Check a raw dataset folder: every problem, and per case what the summary shows."""
    dataset_dir = Path(dataset_dir)
    where = str(dataset_dir / DATASET_JSON)
    spec, problems = read_dataset_json(dataset_dir / DATASET_JSON, env)
    report = DatasetReport(problems, spec)
    if spec is None:
        return report
    cases, found = discover_cases(dataset_dir, spec)
    report.problems += found + _consecutive_problems(spec, where)
    reader, found = _choose_reader(spec, cases, where)
    report.problems += found
    if reader is None or not cases:
        return report
    rules = CaseRules.for_dataset(spec, dataset_is_2d(reader, cases))
    ctx = _Context(reader.name, spec.file_ending, rules)
    check = partial(check_case, ctx=ctx)
    results = map_cases(check, cases, num_processes, progress, stage="verify dataset")
    for case, case_report in zip(cases, results, strict=True):
        report.cases[case.case_id] = case_report
        report.problems += case_report.problems
    labels_at = next((str(c.label.parent) for c in cases if c.label is not None), where)
    report.problems += _label_presence_problems(spec, report.cases, (where, labels_at))
    return report


def _label_presence_problems(
    spec: DatasetSpec, cases: Mapping[str, CaseReport], where: tuple[str, str]
) -> list[Problem]:
    """A label no case contains trains an output nothing taught; no foreground at all is fatal.

    ``where``: dataset.json (for a declared label) and the labels folder (for missing foreground).
    """
    dataset_json, labels_folder = where
    labelled = [case.label_voxels for case in cases.values() if case.label_voxels]
    if not labelled:
        return []
    present = {value for counts in labelled for value, n in counts.items() if n}
    foreground = spec.labels.foreground_labels
    if not present.intersection(foreground):
        msg = f"no label file contains any foreground label {list(foreground)}."
        fix = "Check that the label files were exported with their segmentations."
        return [Problem("error", labels_folder, msg, fix, "label presence")]
    names = spec.labels.names_by_value
    return [
        Problem(
            "warning",
            dataset_json,
            f'label {value} ("{names.get(value, value)}") occurs in no label file.',
            "Remove it from dataset.json or add cases that contain it.",
            "label presence",
        )
        for value in foreground
        if value not in present
    ]


def verify_dataset(
    dataset_dir: Path,
    num_processes: int = 4,
    env: Mapping[str, str] | None = None,
    progress: ProgressCallback = no_progress,
) -> list[Problem]:
    """Checks a raw dataset folder and returns every problem found (errors and warnings).

    Args:
        dataset_dir: the ``DatasetXXX_Name`` folder with dataset.json.
        num_processes: worker processes for the per-case checks; 1 runs them in this process.
        env: variables for ``$VAR`` in paths listed under dataset.json's ``dataset`` key.
        progress: called with ``(stage, done, total)`` while cases are checked.

    Returns:
        Problems in a stable order: dataset.json and layout first, then per case by case id.
    """
    return inspect_dataset(dataset_dir, num_processes, env, progress).problems


def verify_or_raise(
    dataset_dir: Path,
    num_processes: int = 4,
    env: Mapping[str, str] | None = None,
    progress: ProgressCallback = no_progress,
) -> list[Problem]:
    """Like ``verify_dataset`` but raises ProblemsFound when any error was found.

    Returns:
        The warnings, for the caller to show.
    """
    problems = verify_dataset(dataset_dir, num_processes, env, progress)
    if any(p.is_error for p in problems):
        raise ProblemsFound(problems)
    return problems
