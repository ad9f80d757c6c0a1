"""Evaluate predicted segmentations against references: per case, per label/region, and summary.json.

Per case and foreground label (or region, the union of its labels): TP, FP, FN, TN, Dice, IoU, and
the voxel counts of prediction and reference. Voxels whose *reference* is the ignore label count
nowhere. When both masks are empty there is nothing to score and Dice = IoU = NaN, which the
per-label mean skips (nanmean); an empty reference with any false positive scores 0.

``foreground_mean`` is a macro average: the plain mean over labels of the per-label means, so one
label that is NaN in every case makes it NaN (that label could never be scored).

JSON has no NaN: summary.json stores NaN as ``null`` (strict JSON that every parser accepts), and
``load_summary`` turns ``null`` back into NaN.

This module must stay free of torch (it runs in light processes, the Slicer UI and CI without GPU
libraries): numpy and SimpleITK (through autoseg.image_io) only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.atomic import write_json_atomic
from autoseg.case_checks import (
    CaseRules,
    ReadFile,
    first_error,
    grid_problems,
    label_value_problems,
)
from autoseg.errors import AutoSegError
from autoseg.image_io import choose_reader_writer
from autoseg.labels import LabelSpec
from autoseg.parallel import map_cases

__all__ = [
    "METRICS",
    "SUMMARY_FILE",
    "case_metrics",
    "confusion_counts",
    "evaluate_folders",
    "evaluated_regions",
    "load_summary",
    "region_key",
    "region_or_label_mask",
    "summarize",
]

SUMMARY_FILE = "summary.json"
METRICS = ("Dice", "IoU", "TP", "FP", "FN", "TN", "n_pred", "n_ref")
Region = int | tuple[int, ...]
CaseMetrics = dict[str, dict[str, float]]
_CHUNK = 1 << 22  # voxels per bincount call: bounds the int64 temporary to 32 MiB


def evaluated_regions(labels: LabelSpec) -> list[tuple[int, ...]]:
    """What is scored: each foreground region (region mode) or each foreground label."""
    if labels.has_regions:
        return [tuple(r) for r in labels.foreground_regions]
    return [(v,) for v in labels.foreground_labels]


def region_key(region: Region | Sequence[int]) -> str:
    """``"1"`` for a label, ``"(1, 2)"`` for a region (same keys as the class locations)."""
    members = [int(region)] if isinstance(region, int | np.integer) else [int(v) for v in region]
    return str(members[0]) if len(members) == 1 else "(" + ", ".join(map(str, members)) + ")"


def region_or_label_mask(segmentation: np.ndarray, region: Region | Sequence[int]) -> np.ndarray:
    """Boolean mask of a label (``seg == v``) or a region (union of its labels)."""
    members = [region] if isinstance(region, int | np.integer) else list(region)
    mask = segmentation == members[0]
    for value in members[1:]:
        mask |= segmentation == value
    return mask


def confusion_counts(
    reference: np.ndarray,
    prediction: np.ndarray,
    region: Region,
    ignore_mask: np.ndarray | None = None,
) -> dict[str, int]:
    """TP, FP, FN, TN of one label/region; voxels where ``ignore_mask`` is true are left out."""
    ref = region_or_label_mask(reference, region)
    pred = region_or_label_mask(prediction, region)
    total = reference.size
    if ignore_mask is not None:
        valid = ~ignore_mask
        ref &= valid
        pred &= valid
        total = int(np.count_nonzero(valid))
    tp = int(np.count_nonzero(ref & pred))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(ref)) - tp
    return {"TP": tp, "FP": fp, "FN": fn, "TN": total - tp - fp - fn}


def _compact(segmentation: np.ndarray, other: int) -> np.ndarray:
    """Flat integer labels in ``[0, other]``; values outside ``[0, other)`` become ``other``."""
    flat = np.asarray(segmentation).ravel()
    if not np.issubdtype(flat.dtype, np.integer):
        flat = flat.astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= other):
        flat = np.where((flat >= 0) & (flat < other), flat, np.int64(other))
    return flat


def _confusion_matrix(reference: np.ndarray, prediction: np.ndarray, other: int) -> np.ndarray:
    """``matrix[r, p]`` = voxels with reference value r and predicted value p.

    One pass over the case serves every label and region (a region's counts are sums of blocks of
    this matrix), instead of building two masks per label.
    """
    ref, pred = _compact(reference, other), _compact(prediction, other)
    size = other + 1
    counts = np.zeros(size * size, dtype=np.int64)
    for start in range(0, ref.size, _CHUNK):
        index = ref[start : start + _CHUNK].astype(np.intp)
        index *= size
        index += pred[start : start + _CHUNK]
        counts += np.bincount(index, minlength=size * size)
    return counts.reshape(size, size)


def _scores(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    scored = tp + fp + fn > 0
    return {
        "Dice": 2 * tp / (2 * tp + fp + fn) if scored else math.nan,
        "IoU": tp / (tp + fp + fn) if scored else math.nan,
        "TP": tp,
        "FP": fp,
        "FN": fn,
        "TN": tn,
        "n_pred": tp + fp,
        "n_ref": tp + fn,
    }


def case_metrics(reference: np.ndarray, prediction: np.ndarray, labels: LabelSpec) -> CaseMetrics:
    """Metrics of one case per foreground label/region, keyed ``"1"`` or ``"(1, 2)"``."""
    if reference.shape != prediction.shape:
        raise ValueError(f"reference shape {reference.shape} != prediction {prediction.shape}")
    ignore = labels.ignore_label
    other = max([*labels.all_labels, -1 if ignore is None else ignore]) + 1
    matrix = _confusion_matrix(reference, prediction, other)
    if ignore is not None:
        matrix[ignore, :] = 0
    total = int(matrix.sum())
    result: CaseMetrics = {}
    for region in evaluated_regions(labels):
        inside = np.zeros(other + 1, dtype=bool)
        inside[list(region)] = True
        tp = int(matrix[np.ix_(inside, inside)].sum())
        fp = int(matrix[np.ix_(~inside, inside)].sum())
        fn = int(matrix[np.ix_(inside, ~inside)].sum())
        result[region_key(region)] = _scores(tp, fp, fn, total - tp - fp - fn)
    return result


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarize(per_case: Sequence[CaseMetrics]) -> dict[str, Any]:
    """``{"foreground_mean": {metric: v}, "mean": {key: {metric: v}}}`` over cases.

    ``mean`` is the nanmean over cases per label and metric; ``foreground_mean`` the plain mean of
    ``mean`` over all labels except background (NaN if any label's mean is NaN).
    """
    keys = list(dict.fromkeys(k for case in per_case for k in case))
    mean = {
        key: {m: _nanmean([c[key][m] for c in per_case if key in c]) for m in METRICS}
        for key in keys
    }
    foreground = [k for k in keys if k != "0"]
    foreground_mean = {
        m: float(np.mean([mean[k][m] for k in foreground])) if foreground else math.nan
        for m in METRICS
    }
    return {"foreground_mean": foreground_mean, "mean": mean}


_GRID_FIX = "Predict the reference's own image, so that the prediction has its voxel grid."


def _check_pair(
    reference: tuple[ReadFile, np.ndarray],
    prediction: tuple[ReadFile, np.ndarray],
    labels: LabelSpec,
) -> None:
    """Both are label maps of the dataset (the checks training data gets) on the same grid; a
    stray value or another spacing would otherwise be scored as if it meant something."""
    rules = CaseRules(1, labels.expected_values, labels.ignore_label)
    problems = [
        *label_value_problems(reference[1], reference[0].path, rules)[0],
        *label_value_problems(prediction[1], prediction[0].path, rules)[0],
        *grid_problems(prediction[0], reference[0], "prediction", _GRID_FIX),
    ]
    if any(p.is_error for p in problems):
        raise first_error(problems)


def _evaluate_pair(item: tuple[Path, Path, LabelSpec, str, str]) -> dict[str, Any]:
    """One case (module level so that spawned workers can run it)."""
    reference_file, prediction_file, labels, file_ending, reader_name = item
    reader = choose_reader_writer(file_ending, override=reader_name)
    reference, reference_geometry = reader.read_seg(reference_file)
    prediction, prediction_geometry = reader.read_seg(prediction_file)
    _check_pair(
        (ReadFile(reference_file, reference.shape[1:], reference_geometry), reference),
        (ReadFile(prediction_file, prediction.shape[1:], prediction_geometry), prediction),
        labels,
    )
    return {
        "metrics": case_metrics(reference, prediction, labels),
        "prediction_file": str(prediction_file),
        "reference_file": str(reference_file),
    }


def _segmentation_files(folder: Path, file_ending: str) -> list[str]:
    if not folder.is_dir():
        raise AutoSegError(f"{folder}: folder not found. Fix: check the path.")
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(file_ending) and not p.name.startswith(".")
    )


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:10]) + (f" ... ({len(names)} in all)" if len(names) > 10 else "")


def _matched_names(
    reference_dir: Path, prediction_dir: Path, file_ending: str, allow_missing: bool
) -> list[str]:
    predicted = _segmentation_files(prediction_dir, file_ending)
    references = set(_segmentation_files(reference_dir, file_ending))
    orphans = [n for n in predicted if n not in references]
    if orphans:
        raise AutoSegError(
            f"{prediction_dir}: no reference in {reference_dir} for {_listed(orphans)}. "
            "Fix: use the matching reference folder or remove those predictions."
        )
    missing = sorted(references - set(predicted))
    if missing and not allow_missing:
        raise AutoSegError(
            f"{prediction_dir}: predictions missing for {_listed(missing)} (references in "
            f"{reference_dir}). Fix: predict those cases, or allow missing predictions to "
            "evaluate only the predicted ones."
        )
    if not predicted:
        raise AutoSegError(
            f"{prediction_dir}: no files ending with {file_ending!r} to evaluate. "
            "Fix: check the folder and the file ending."
        )
    return predicted


def evaluate_folders(  # noqa: PLR0913 - the agreed public signature; the options are keyword-only
    reference_dir: Path,
    prediction_dir: Path,
    labels: LabelSpec,
    file_ending: str,
    *,
    output_file: Path | None = None,
    num_processes: int = 1,
    allow_missing: bool = False,
    reader: str | None = None,
) -> dict[str, Any]:
    """Evaluate every prediction against the reference of the same file name; write summary.json.

    Args:
        output_file: where to write the summary; default ``prediction_dir / "summary.json"``.
        num_processes: worker processes reading and scoring cases.
        allow_missing: evaluate only the predicted cases instead of failing when references have
            no prediction.
        reader: the dataset's reader (the plans' ``image_reader_writer`` or dataset.json's
            ``overwrite_image_reader_writer``); None chooses it like for the dataset, from the file
            ending and a reference file (so 3D TIFF stacks get the 3D reader, never the 2D one).

    Returns:
        The summary (NaN as float NaN; on disk NaN is null): ``foreground_mean``, ``mean`` and
        ``metric_per_case`` (``metrics``, ``prediction_file``, ``reference_file`` per case).
    """
    reference_dir, prediction_dir = Path(reference_dir), Path(prediction_dir)
    names = _matched_names(reference_dir, prediction_dir, file_ending, allow_missing)
    reader_name = choose_reader_writer(file_ending, reference_dir / names[0], reader).name
    items = [
        (reference_dir / n, prediction_dir / n, labels, file_ending, reader_name) for n in names
    ]
    per_case = map_cases(_evaluate_pair, items, num_processes, stage="evaluation")
    summary = summarize([case["metrics"] for case in per_case])
    summary["metric_per_case"] = per_case
    target = Path(output_file) if output_file is not None else prediction_dir / SUMMARY_FILE
    write_json_atomic(target, _nan_to_null(summary))
    return summary


def _nan_to_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_null(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _null_to_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _null_to_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_null_to_nan(v) for v in value]
    return math.nan if value is None else value


def load_summary(path: Path) -> dict[str, Any]:
    """Read a summary.json written by :func:`evaluate_folders` (``null`` back to NaN).

    Files that contain bare ``NaN`` (as nnU-Net writes them) are read too.
    """
    try:
        return _null_to_nan(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AutoSegError(
            f"{path}: cannot read the evaluation summary ({error}). "
            "Fix: run the evaluation again to rewrite it."
        ) from None
