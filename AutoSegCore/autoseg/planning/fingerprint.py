"""Dataset fingerprint: spacings, cropped shapes and foreground intensity statistics of the training set.

The method estimates the intensity statistics from the same number of random foreground samples per
case, so every case weighs the same however large its foreground. We compute the expectation of that
estimator instead: every foreground voxel of a case carries weight 1/(its case's voxel count) and the
statistics are weighted. That is deterministic, needs no 10^8-element sample array, and gives the
same numbers up to the sampling noise the method accepts. Very large foregrounds are subsampled (without
replacement, fixed seed) to keep memory bounded.

The fingerprint also records what it was computed from (the reader and every case's raw file
stamps, see :mod:`autoseg.provenance`): :func:`stale_reason` tells a fingerprint of an older
version of the dataset (cases added, removed or changed) from a current one, so re-running the
pipeline recomputes it instead of planning from data the user has since fixed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from autoseg.atomic import write_json_atomic
from autoseg.case_checks import CaseRules, load_case
from autoseg.dataset import CaseFiles
from autoseg.errors import AutoSegError
from autoseg.geometry import crop_to_nonzero
from autoseg.image_formats import header_channels
from autoseg.image_io import READER_WRITERS
from autoseg.parallel import map_cases
from autoseg.plans import IntensityStats, Plans
from autoseg.progress import ProgressCallback, no_progress
from autoseg.provenance import case_sources, describe_case_changes, settings_digest

TOTAL_VALUE_BUDGET = 20_000_000
MIN_VALUES_PER_CASE = 10_000
SAMPLING_SEED = 1234
# Raise when a change of this module changes the fingerprint of the same data.
FINGERPRINT_FORMAT = 1


@dataclass(frozen=True)
class DatasetFingerprint:
    """What planning needs to know about a dataset (array axis order, before transposition)."""

    spacings: list[tuple[float, ...]]
    shapes_after_crop: list[tuple[int, ...]]
    foreground_intensity_properties_per_channel: dict[str, IntensityStats]
    median_relative_size_after_cropping: float
    # {"format", "reader", "cases": {case_id: raw file stamps}}; None when computed by an older
    # AutoSeg (or from arrays in memory).
    provenance: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        provenance = {} if self.provenance is None else {"provenance": self.provenance}
        return {
            "spacings": [list(s) for s in self.spacings],
            "shapes_after_crop": [list(s) for s in self.shapes_after_crop],
            "foreground_intensity_properties_per_channel": {
                k: asdict(v) for k, v in self.foreground_intensity_properties_per_channel.items()
            },
            "median_relative_size_after_cropping": self.median_relative_size_after_cropping,
            **provenance,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetFingerprint:
        return cls(
            spacings=[tuple(float(v) for v in s) for s in data["spacings"]],
            shapes_after_crop=[tuple(int(v) for v in s) for s in data["shapes_after_crop"]],
            foreground_intensity_properties_per_channel={
                k: IntensityStats(**{n: float(x) for n, x in v.items()})
                for k, v in data["foreground_intensity_properties_per_channel"].items()
            },
            median_relative_size_after_cropping=float(data["median_relative_size_after_cropping"]),
            provenance=data.get("provenance") if isinstance(data.get("provenance"), dict) else None,
        )

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> DatasetFingerprint:
        try:
            return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise AutoSegError(
                f"{path}: cannot read the fingerprint ({error}). "
                "Fix: re-run 'autoseg extract_fingerprint' with --clean."
            ) from None


@dataclass(frozen=True)
class CaseFingerprint:
    """Per-case measurements; ``foreground_values`` is (channels, n) float32."""

    spacing: tuple[float, ...]
    shape_after_crop: tuple[int, ...]
    relative_size_after_crop: float
    foreground_values: np.ndarray


@dataclass(frozen=True)
class _CaseJob:
    reader_name: str
    case: CaseFiles
    max_values: int
    rules: CaseRules


def fingerprint_case(
    images: np.ndarray, seg: np.ndarray, spacing: Sequence[float], max_values: int
) -> CaseFingerprint:
    """Measure one case: crop to the non-zero region, collect foreground intensities per channel."""
    cropped, cropped_seg, _ = crop_to_nonzero(images, seg)
    foreground = cropped_seg[0] > 0
    values = cropped[:, foreground]
    if values.shape[1] > max_values:
        rng = np.random.default_rng(SAMPLING_SEED)
        values = values[:, rng.choice(values.shape[1], size=max_values, replace=False)]
    return CaseFingerprint(
        spacing=tuple(float(s) for s in spacing),
        shape_after_crop=tuple(int(s) for s in cropped.shape[1:]),
        relative_size_after_crop=float(np.prod(cropped.shape[1:]) / np.prod(images.shape[1:])),
        foreground_values=values.astype(np.float32, copy=False),
    )


def _run_case_job(job: _CaseJob) -> CaseFingerprint:
    reader = READER_WRITERS[job.reader_name]()
    if job.case.label is None:
        raise AutoSegError(f"case {job.case.case_id} has no label file. Fix: add it to labelsTr.")
    case = load_case(reader, job.case, job.rules)  # the checks verify makes; stops on errors
    assert case.seg is not None
    return fingerprint_case(case.images, case.seg, case.geometry.spacing, job.max_values)


def weighted_percentiles(
    values: np.ndarray, weights: np.ndarray, percentiles: Sequence[float]
) -> np.ndarray:
    """Percentiles of a weighted sample, linearly interpolated.

    Value i sits at (sum of the weights before it) / (total weight - last weight), which reduces to
    numpy's default ``i / (n - 1)`` when all weights are equal.
    """
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    sorted_weights = weights[order]
    cumulative = np.cumsum(sorted_weights)
    positions = (cumulative - sorted_weights) / max(cumulative[-1] - sorted_weights[-1], 1e-300)
    return np.interp(np.asarray(percentiles) / 100, positions, sorted_values)


def intensity_statistics(per_case_values: Sequence[np.ndarray]) -> IntensityStats:
    """Statistics over cases where every case weighs the same, whatever its number of voxels."""
    non_empty = [v.astype(np.float64) for v in per_case_values if v.size]
    if not non_empty:
        nan = float("nan")
        return IntensityStats(nan, nan, nan, nan, nan, nan, nan)
    values = np.concatenate(non_empty)
    weights = np.concatenate([np.full(v.size, 1.0 / v.size) for v in non_empty])
    mean = float(np.average(values, weights=weights))
    std = float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))
    median, low, high = weighted_percentiles(values, weights, (50, 0.5, 99.5))
    return IntensityStats(
        mean=mean,
        median=float(median),
        std=std,
        min=float(values.min()),
        max=float(values.max()),
        percentile_00_5=float(low),
        percentile_99_5=float(high),
    )


def combine_case_fingerprints(cases: Sequence[CaseFingerprint]) -> DatasetFingerprint:
    """Aggregate per-case measurements into the dataset fingerprint."""
    n_channels = cases[0].foreground_values.shape[0]
    stats = {
        str(c): intensity_statistics([case.foreground_values[c] for case in cases])
        for c in range(n_channels)
    }
    return DatasetFingerprint(
        spacings=[case.spacing for case in cases],
        shapes_after_crop=[case.shape_after_crop for case in cases],
        foreground_intensity_properties_per_channel=stats,
        median_relative_size_after_cropping=float(
            np.median([case.relative_size_after_crop for case in cases])
        ),
    )


def _channels_of(case: CaseFiles) -> int:
    """Channels the first case supplies (an RGB file counts 3): without dataset.json, every case
    must match it."""
    counts = [header_channels(path) for path in case.images]
    return sum(count or 1 for count in counts)


def extract_fingerprint(
    cases: Sequence[CaseFiles],
    reader_name: str,
    num_processes: int = 1,
    progress: ProgressCallback = no_progress,
    rules: CaseRules | None = None,
) -> DatasetFingerprint:
    """Fingerprint the training cases (read with the registered reader ``reader_name``).

    Every case passes the checks of :mod:`autoseg.case_checks` (``rules``: the dataset's; by
    default only those that need no dataset.json), so a broken case stops here, named.
    """
    if not cases:
        raise AutoSegError(
            "the dataset has no training cases. Fix: add cases to imagesTr/labelsTr."
        )
    provenance = dataset_provenance(cases, reader_name)  # before reading: a later edit shows
    max_values = max(TOTAL_VALUE_BUDGET // len(cases), MIN_VALUES_PER_CASE)
    rules = rules or CaseRules(_channels_of(cases[0]), None)
    jobs = [_CaseJob(reader_name, case, max_values, rules) for case in cases]
    measured = map_cases(_run_case_job, jobs, num_processes, progress, "fingerprint")
    if not any(case.foreground_values.size for case in measured):
        raise AutoSegError(
            f"{cases[0].label.parent if cases[0].label else 'labelsTr'}: no label file contains "
            "any foreground (a value above 0), so there is nothing to learn. Fix: check that the "
            "label files were exported with their segmentations."
        )
    fingerprint = combine_case_fingerprints(measured)
    return replace(fingerprint, provenance=provenance)


def dataset_provenance(cases: Sequence[CaseFiles], reader_name: str) -> dict[str, Any]:
    """What a fingerprint of these cases is computed from."""
    return {
        "format": FINGERPRINT_FORMAT,
        "reader": reader_name,
        "cases": {case.case_id: case_sources(case) for case in cases},
    }


def stale_reason(
    fingerprint: DatasetFingerprint, cases: Sequence[CaseFiles], reader_name: str
) -> str | None:
    """Why ``fingerprint`` does not describe the current training cases; None when it does."""
    old = fingerprint.provenance
    if old is None:
        return "it has no record of the cases it was computed from (written by an older AutoSeg)"
    if old.get("format") != FINGERPRINT_FORMAT:
        return "it was computed by another version of the fingerprint code"
    if old.get("reader") != reader_name:
        return f"the images are now read with {reader_name}, not {old.get('reader')}"
    new = dataset_provenance(cases, reader_name)["cases"]
    changes = describe_case_changes(old.get("cases") or {}, new)
    return None if changes is None else f"the dataset changed since: {changes}"


def planned_from(plans: Plans, fingerprint: DatasetFingerprint) -> bool:
    """Whether the plans carry this fingerprint's intensity statistics (they are copied at
    planning time), i.e. were made from it and not from an older fingerprint."""
    stats = fingerprint.foreground_intensity_properties_per_channel
    return settings_digest(plans.foreground_intensity_properties_per_channel) == settings_digest(
        stats
    )
