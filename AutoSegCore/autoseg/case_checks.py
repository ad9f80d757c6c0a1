"""The checks every training case must pass, defined once for ``verify`` and for every stage.

``verify`` collects every finding of every case; the fingerprint and preprocessing stages read the
same files anyway, so they run the same checks on the arrays they already hold and stop at the
first case with an error (nothing of it is stored). All checks are single passes over arrays that
are in memory already: finiteness of the image, the label's values (a histogram, not a sort, for
integer labels), and the agreement of shape, spacing, dimensionality, origin and direction.

Why each label rule exists: a value dataset.json does not declare trains a class nobody asked for
(or crashes the loss); a negative value collides with the ``-1`` that marks "outside the image" in
stored segmentations; a fractional value (1.2) would be truncated to a different class.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.channel_checks import channel_problems, rgb_range_problems
from autoseg.channel_schemes import rgb_channels
from autoseg.dataset import CaseFiles, DatasetSpec
from autoseg.errors import AutoSegError, Problem
from autoseg.image_formats import Geometry, read_header

_MAX_LISTED = 20  # label values listed in one message
_HISTOGRAM_RANGE = 1 << 16  # integer labels spanning more are counted by sorting instead
SPACING_RTOL = 1e-4  # spacings written as float32 differ in the 7th digit; that is the same grid
POSE_TOLERANCE = 1e-4
_GRID_FIX = "Resample all channels and the label of a case onto the same voxel grid."
_POSE_FIX = (
    "Check that image and label overlay correctly in a viewer; if they do, copy the image's "
    "origin/direction into the other file."
)
_LABEL_KIND = "label values"
_LABEL_FIX = "Save labels as integers (nearest-neighbour resampling, integer pixel type)."


@dataclass(frozen=True)
class CaseRules:
    """What every case of one dataset must satisfy (small and picklable for worker processes).

    Attributes:
        num_channels: image channels per case (dataset.json's channel_names).
        label_values: values a label file may contain (the labels and the ignore label); None
            when the caller does not know the labels (only integer, non-negative is checked).
        ignore_label: the ignore label's value, if any.
        is_2d: whether the dataset's images are 2D; None skips the dimensionality check.
        owner: whose rules these are, as messages name it ("this dataset", "this model").
        rgb_channels: channels normalized by RGBTo01 ("rgb_to_0_1"), whose values must be 8-bit.
    """

    num_channels: int
    label_values: tuple[int, ...] | None
    ignore_label: int | None = None
    is_2d: bool | None = None
    owner: str = "this dataset"
    rgb_channels: tuple[int, ...] = ()

    @classmethod
    def for_dataset(cls, spec: DatasetSpec, is_2d: bool | None = None) -> CaseRules:
        labels = spec.labels
        rgb = rgb_channels(spec.channel_names)
        return cls(
            spec.num_channels, labels.expected_values, labels.ignore_label, is_2d, rgb_channels=rgb
        )


@dataclass
class CaseReport:
    """What a check learnt about a case: its findings and the numbers for verify's summary."""

    problems: list[Problem] = field(default_factory=list)
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    channels: int = 0
    label_voxels: dict[int, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]


@dataclass
class LoadedCase:
    """A case that passed: images ``(c, x, y, z)`` float32, the first image's geometry, the label
    ``(1, x, y, z)`` (None without label) and the warnings found on the way."""

    images: np.ndarray
    geometry: Geometry
    seg: np.ndarray | None
    warnings: list[Problem]


# ------------------------------------------------------------------------------ value checks
def _listed(values: Sequence[Any]) -> str:
    text = ", ".join(str(v) for v in values[:_MAX_LISTED])
    return text + (f" (+{len(values) - _MAX_LISTED} more)" if len(values) > _MAX_LISTED else "")


def image_value_problems(array: np.ndarray, path: Path) -> list[Problem]:
    """NaN or infinite intensities (they poison normalization and every loss downstream) are
    errors; a constant image (often an export of an empty volume) is a warning."""
    if array.size == 0:
        return []
    low, high = array.min(), array.max()  # NaN propagates, so finite bounds mean finite voxels
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        message = f"image contains {bad} NaN or infinite voxel value(s)."
        fix = "Replace them with finite values (e.g. the image minimum) and save the file again."
        return [Problem("error", str(path), message, fix, "intensities")]
    if low == high:
        message = (
            f"image is constant (every voxel is {float(low):g}); it shows the network nothing."
        )
        fix = "Check that the right file was exported."
        return [Problem("warning", str(path), message, fix, "intensities")]
    return []


def label_voxel_counts(array: np.ndarray) -> dict[float, int]:
    """Voxels per value: a histogram for integer labels (one pass), a sort only for floats."""
    if array.size == 0:
        return {}
    if array.dtype.kind in "ui":
        low, high = int(array.min()), int(array.max())
        if high - low <= _HISTOGRAM_RANGE:
            flat = array.ravel() if low >= 0 else array.ravel().astype(np.int64) - low
            counts = np.bincount(flat)
            present = np.flatnonzero(counts)
            return {int(v) + min(low, 0): int(counts[v]) for v in present}
        values, counts = np.unique(array, return_counts=True)
        return {int(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}
    values, counts = np.unique(array[np.isfinite(array)], return_counts=True)
    return {float(v): int(c) for v, c in zip(values.tolist(), counts.tolist(), strict=True)}


def _float_label_problems(array: np.ndarray, where: str, values: list[float]) -> list[Problem]:
    problems = []
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        msg = f"label contains {bad} NaN or infinite value(s)."
        problems.append(Problem("error", where, msg, _LABEL_FIX, _LABEL_KIND))
    fractional = [v for v in values if v != round(v)]
    if fractional:
        msg = f"label contains non-integer values: {_listed([f'{v:.6g}' for v in fractional])}."
        problems.append(Problem("error", where, msg, _LABEL_FIX, _LABEL_KIND))
    return problems


def label_value_problems(
    array: np.ndarray, path: Path, rules: CaseRules
) -> tuple[list[Problem], dict[int, int]]:
    """Findings about a label array and its voxels per integer value."""
    where = str(path)
    counts = label_voxel_counts(array)
    problems = _float_label_problems(array, where, list(counts))
    integers = {int(v): c for v, c in counts.items() if v == round(v)}
    negative = sorted(v for v in integers if v < 0)
    if negative:
        msg = (
            f"label contains negative values {_listed(negative)}; labels are 0 (background), "
            "1, 2, ... (and -1 marks voxels outside the image internally)."
        )
        fix = "Relabel them to the values defined in dataset.json."
        problems.append(Problem("error", where, msg, fix, _LABEL_KIND))
    allowed = rules.label_values
    unexpected = [v for v in sorted(integers) if v >= 0 and allowed and v not in allowed]
    if unexpected:
        msg = (
            f"label contains values {_listed(unexpected)} that dataset.json does not define "
            f"(defined: {list(allowed or ())})."
        )
        fix = 'Add them to "labels" in dataset.json or correct the label file.'
        if 255 in unexpected:  # black/white masks exported by image editors
            fix += " A mask saved as 0/255 needs its 255 replaced by the label's value (e.g. 1)."
        problems.append(Problem("error", where, msg, fix, _LABEL_KIND))
    if not [v for v in counts if v not in (0, rules.ignore_label)]:
        msg = "label contains only background; this case teaches the network no foreground."
        fix = "Check that the right file was saved."
        problems.append(Problem("warning", where, msg, fix, "background only"))
    return problems, integers


# ------------------------------------------------------------------------------- grid checks
@dataclass(frozen=True)
class ReadFile:
    """One file's array shape (spatial) and geometry, as compared between the files of a case."""

    path: Path
    shape: tuple[int, ...]
    geometry: Geometry


def _dimension_name(is_2d: bool) -> str:
    return "2D" if is_2d else "3D"


def dimension_problems(item: ReadFile, rules: CaseRules) -> list[Problem]:
    """A 2D image in a 3D dataset (or the reverse) would get a made-up slice spacing."""
    if rules.is_2d is None or item.geometry.is_2d == rules.is_2d:
        return []
    mine, theirs = _dimension_name(item.geometry.is_2d), _dimension_name(rules.is_2d)
    msg = f"is a {mine} image, but the images of {rules.owner} are {theirs}."
    fix = f"Export it as a {theirs} image like the others, or remove the case."
    return [Problem("error", str(item.path), msg, fix, "2D/3D")]


def grid_problems(item: ReadFile, ref: ReadFile, what: str, fix: str = _GRID_FIX) -> list[Problem]:
    """Shape, spacing and dimensionality differences are errors; origin/direction warnings."""
    where, name = str(item.path), ref.path.name
    if item.geometry.is_2d != ref.geometry.is_2d:
        mine, theirs = _dimension_name(item.geometry.is_2d), _dimension_name(ref.geometry.is_2d)
        msg = f"{what} is {mine} but {name} is {theirs}."
        return [Problem("error", where, msg, fix, "voxel grid")]
    if item.shape != ref.shape:
        msg = f"{what} shape {item.shape} differs from {name} {ref.shape}."
        return [Problem("error", where, msg, fix, "voxel grid")]
    if not np.allclose(item.geometry.spacing, ref.geometry.spacing, rtol=SPACING_RTOL, atol=0):
        msg = f"{what} spacing {item.geometry.spacing} differs from {name} {ref.geometry.spacing}."
        return [Problem("error", where, msg, fix, "voxel grid")]
    problems = []
    for attr in ("origin", "direction"):
        mine_v, theirs_v = getattr(item.geometry, attr), getattr(ref.geometry, attr)
        if not np.allclose(mine_v, theirs_v, rtol=POSE_TOLERANCE, atol=POSE_TOLERANCE):
            msg = f"{what} {attr} {mine_v} differs from {name} {theirs_v}."
            problems.append(Problem("warning", where, msg, _POSE_FIX, "origin/direction"))
    return problems


def dataset_is_2d(reader: Any, cases: Sequence[CaseFiles]) -> bool | None:
    """Whether the dataset's images are 2D: fixed by some readers, else the majority of the
    files' headers (so the odd file out is the one reported). None when no header is readable."""
    fixed = getattr(reader, "fixed_2d", None)
    if fixed is not None:
        return bool(fixed)
    votes = Counter(
        header.GetDimension() == 2
        for header in (read_header(case.images[0]) for case in cases if case.images)
        if header is not None
    )
    if not votes:
        return None
    return votes[True] > votes[False]


# ------------------------------------------------------------------------------ whole cases
def read_problem(path: Path, error: Exception) -> Problem:
    """A file the reader refused, as a finding (its message already names file and fix)."""
    text = str(error).removeprefix(f"{path}: ")
    message, _, fix = text.partition(" Fix: ")
    if not message.startswith("cannot be read"):
        message = f"cannot be read: {message}"
    fix = fix or "Re-export the file from the original data; check that it is complete."
    return Problem("error", str(path), message.rstrip(".") + ".", fix, "unreadable")


def _read(reader: Any, path: Path, seg: bool) -> tuple[Any, list[Problem]]:
    try:
        return (reader.read_seg(path) if seg else reader.read_image(path)), []
    except Exception as error:  # any failure of a file is a finding, never a crash of the check
        return None, [read_problem(path, error)]


def _read_images(
    reader: Any, files: Sequence[Path], rules: CaseRules, report: CaseReport
) -> tuple[list[np.ndarray], list[ReadFile]]:
    arrays: list[np.ndarray] = []
    read: list[ReadFile] = []
    for path in files:
        result, found = _read(reader, Path(path), seg=False)
        report.problems += found
        if result is None:
            continue
        array, geometry = result
        item = ReadFile(Path(path), tuple(array.shape[1:]), geometry)
        report.problems += image_value_problems(array, item.path) + dimension_problems(item, rules)
        report.problems += grid_problems(item, read[0], "channel") if read else []
        arrays.append(array)
        read.append(item)
    return arrays, read


def inspect_images(
    reader: Any, case_id: str, files: Sequence[Path], rules: CaseRules
) -> tuple[np.ndarray | None, Geometry | None, CaseReport]:
    """Read and check the channel files of one case; the stacked image when all were readable."""
    report = CaseReport()
    arrays, read = _read_images(reader, files, rules, report)
    if len(arrays) != len(files) or not arrays:
        return None, None, report
    components = [
        (item.path, int(array.shape[0])) for item, array in zip(read, arrays, strict=True)
    ]
    report.channels = sum(count for _, count in components)
    report.problems += channel_problems(case_id, components, rules.num_channels, rules.owner)
    report.shape, report.spacing = read[0].shape, read[0].geometry.spacing
    if report.errors:
        return None, read[0].geometry, report
    images = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
    report.problems += rgb_range_problems(images, components, rules.rgb_channels)
    if report.errors:
        return None, read[0].geometry, report
    return images, read[0].geometry, report


def inspect_case(
    reader: Any, case: CaseFiles, rules: CaseRules
) -> tuple[LoadedCase | None, CaseReport]:
    """Every finding about one case and, when it has no error, the case itself."""
    images, geometry, report = inspect_images(reader, case.case_id, case.images, rules)
    if case.label is None:
        ok = images is not None and geometry is not None
        return (LoadedCase(images, geometry, None, report.problems) if ok else None), report
    result, found = _read(reader, case.label, seg=True)
    report.problems += found
    if result is None:
        return None, report
    seg, seg_geometry = result
    found, report.label_voxels = label_value_problems(seg, case.label, rules)
    report.problems += found
    if geometry is not None and report.shape is not None:
        label = ReadFile(case.label, tuple(seg.shape[1:]), seg_geometry)
        first = ReadFile(case.images[0], report.shape, geometry)
        report.problems += grid_problems(label, first, "label")
    if report.errors or images is None or geometry is None:
        return None, report
    return LoadedCase(images, geometry, seg, report.problems), report


def first_error(problems: Sequence[Problem]) -> AutoSegError:
    """The first error as the one line a stage stops with (the others are in ``verify``)."""
    errors = [p for p in problems if p.is_error] or [
        Problem("error", "case", "has no image files.", "List at least one image per case.")
    ]
    text = f"{errors[0].location}: {errors[0].message} Fix: {errors[0].fix}"
    if len(errors) > 1:
        text += f" ({len(errors) - 1} more problem(s) in this case: run 'autoseg verify'.)"
    return AutoSegError(text)


def load_images(
    reader: Any, case_id: str, files: Sequence[Path], rules: CaseRules
) -> tuple[np.ndarray, Geometry]:
    """Read the channel files of one case (e.g. a prediction input); raises its first error."""
    images, geometry, report = inspect_images(reader, case_id, files, rules)
    if images is None or geometry is None:
        raise first_error(report.problems)
    return images, geometry


def load_case(reader: Any, case: CaseFiles, rules: CaseRules) -> LoadedCase:
    """Read a training case for a stage; a case with any error raises its first error."""
    loaded, report = inspect_case(reader, case, rules)
    if loaded is None:
        raise first_error(report.problems)
    return loaded
