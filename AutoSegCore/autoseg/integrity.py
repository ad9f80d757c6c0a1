"""Dataset integrity check: every problem of a raw dataset, reported in one run.

Training on a broken dataset fails late and obscurely (a stray label value becomes a crash in the loss
hours later), so this check reads every file once and reports each problem with the file and the fix.
Nothing stops at the first problem: dataset.json, the file layout, the label definition, the reader
and every case are all checked, and the per-case checks run in parallel worker processes that return
their findings instead of raising.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from autoseg.dataset import DATASET_JSON, CaseFiles, DatasetSpec, discover_cases, read_dataset_json
from autoseg.errors import AutoSegError, Problem, ProblemsFound
from autoseg.image_io import Geometry, choose_reader_writer
from autoseg.parallel import map_cases
from autoseg.progress import ProgressCallback, no_progress

_MAX_LISTED = 20  # label values listed in one message
_GRID_FIX = "Resample all channels and the label of a case onto the same voxel grid."
_POSE_FIX = (
    "Check that image and label overlay correctly in a viewer; if they do, copy the image's "
    "origin/direction into the other file."
)


@dataclass(frozen=True)
class _Context:
    """What a worker needs besides the case; small and picklable for spawn workers."""

    reader_name: str
    file_ending: str
    num_channels: int
    expected_labels: tuple[int, ...]
    ignore_label: int | None


class _Loaded(NamedTuple):
    path: Path
    shape: tuple[int, ...]
    geometry: Geometry


def _read(reader: Any, path: Path, seg: bool) -> tuple[Any, list[Problem]]:
    try:
        return (reader.read_seg(path) if seg else reader.read_image(path)), []
    except Exception as exc:  # any failure of a file is a finding, never a crash of the check
        text = str(exc).removeprefix(f"{path}: ")
        message, _, fix = text.partition(" Fix: ")
        if not message.startswith("cannot be read"):
            message = f"cannot be read: {message}"
        fix = fix or "Re-export the file from the original data; check that it is complete."
        return None, [Problem("error", str(path), message, fix)]


def _compare(item: _Loaded, ref: _Loaded, what: str) -> list[Problem]:
    """Shape/spacing differences are errors; origin/direction differences only warnings."""
    where, name = str(item.path), ref.path.name
    if item.shape != ref.shape:
        msg = f"{what} shape {item.shape} differs from {name} {ref.shape}."
        return [Problem("error", where, msg, _GRID_FIX)]
    if not np.allclose(item.geometry.spacing, ref.geometry.spacing):
        msg = f"{what} spacing {item.geometry.spacing} differs from {name} {ref.geometry.spacing}."
        return [Problem("error", where, msg, _GRID_FIX)]
    problems = []
    for attr in ("origin", "direction"):
        mine, theirs = getattr(item.geometry, attr), getattr(ref.geometry, attr)
        if len(mine) != len(theirs) or not np.allclose(mine, theirs, rtol=1e-4, atol=1e-4):
            msg = f"{what} {attr} {mine} differs from {name} {theirs}."
            problems.append(Problem("warning", where, msg, _POSE_FIX))
    return problems


def _image_problems(case: CaseFiles, reader: Any, ctx: _Context) -> tuple[list, list[Problem]]:
    loaded: list[_Loaded] = []
    problems: list[Problem] = []
    channels = 0
    for path in case.images:
        result, found = _read(reader, path, seg=False)
        problems += found
        if result is None:
            continue
        array, geometry = result
        channels += array.shape[0]
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            msg = f"image contains {bad} NaN or infinite voxel value(s)."
            fix = "Replace them with finite values (e.g. the image minimum) before training."
            problems.append(Problem("error", str(path), msg, fix))
        loaded.append(_Loaded(path, tuple(array.shape[1:]), geometry))
    if not problems and channels != ctx.num_channels:
        msg = f"case {case.case_id} has {channels} channel(s); channel_names lists {ctx.num_channels}."
        fix = "Give every case exactly the channels of channel_names, in the same order."
        problems.append(Problem("error", str(case.images[0]), msg, fix))
    for item in loaded[1:]:
        problems += _compare(item, loaded[0], "channel")
    return loaded, problems


def _listed(values: list[Any]) -> str:
    text = ", ".join(str(v) for v in values[:_MAX_LISTED])
    return text + (f" (+{len(values) - _MAX_LISTED} more)" if len(values) > _MAX_LISTED else "")


def _label_value_problems(array: np.ndarray, path: Path, ctx: _Context) -> list[Problem]:
    where, problems = str(path), []
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            msg = f"label contains {int(np.count_nonzero(~finite))} NaN or infinite value(s)."
            problems.append(Problem("error", where, msg, "Labels must be integer class values."))
        values = np.unique(array[finite])
        fractional = values[values != np.round(values)]
        if fractional.size:
            msg = f"label contains non-integer values: {_listed(fractional.tolist())}."
            fix = "Save labels as integers (nearest-neighbour resampling, integer pixel type)."
            problems.append(Problem("error", where, msg, fix))
        values = values[values == np.round(values)]
    else:
        values = np.unique(array)
    found = sorted({int(v) for v in values.tolist()})
    unexpected = [v for v in found if v not in ctx.expected_labels]
    if unexpected:
        msg = (
            f"label contains values {_listed(unexpected)} that dataset.json does not define "
            f"(defined: {list(ctx.expected_labels)})."
        )
        fix = 'Add them to "labels" in dataset.json or correct the label file.'
        problems.append(Problem("error", where, msg, fix))
    if not [v for v in found if v not in (0, ctx.ignore_label)]:
        msg = "label contains only background; this case teaches the network no foreground."
        problems.append(Problem("warning", where, msg, "Check that the right file was saved."))
    return problems


def _check_case(case: CaseFiles, ctx: _Context) -> list[Problem]:
    reader = choose_reader_writer(ctx.file_ending, override=ctx.reader_name)
    loaded, problems = _image_problems(case, reader, ctx)
    if case.label is None:
        return problems
    result, found = _read(reader, case.label, seg=True)
    problems += found
    if result is None:
        return problems
    array, geometry = result
    problems += _label_value_problems(array, case.label, ctx)
    if loaded:
        problems += _compare(
            _Loaded(case.label, tuple(array.shape[1:]), geometry), loaded[0], "label"
        )
    return problems


def check_case(case: CaseFiles, ctx: _Context) -> list[Problem]:
    """All problems of one case; never raises (it runs in worker processes)."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            problems = _check_case(case, ctx)
    except Exception as exc:
        where = str(case.images[0]) if case.images else case.case_id
        msg = f"case {case.case_id} could not be checked: {exc}"
        return [Problem("error", where, msg, "Check that its files are valid images.")]
    where = str(case.images[0]) if case.images else case.case_id
    for caught_warning in caught:
        message, _, fix = str(caught_warning.message).partition(" Fix: ")
        problems.append(Problem("warning", where, message, fix))
    return problems


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


def _run_cases(
    cases: list[CaseFiles], ctx: _Context, num_processes: int, progress: ProgressCallback
) -> list[Problem]:
    check = partial(check_case, ctx=ctx)
    found = map_cases(check, cases, num_processes, progress, stage="verify dataset")
    return [p for problems in found for p in problems]


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
    dataset_dir = Path(dataset_dir)
    where = str(dataset_dir / DATASET_JSON)
    spec, problems = read_dataset_json(dataset_dir / DATASET_JSON, env)
    if spec is None:
        return problems
    cases, found = discover_cases(dataset_dir, spec)
    problems += found + _consecutive_problems(spec, where)
    reader, found = _choose_reader(spec, cases, where)
    problems += found
    if reader is None or not cases:
        return problems
    ctx = _Context(
        reader.name,
        spec.file_ending,
        spec.num_channels,
        spec.labels.expected_values,
        spec.labels.ignore_label,
    )
    return problems + _run_cases(cases, ctx, num_processes, progress)


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
