from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from autoseg.dataset import load_dataset_json, training_cases
from autoseg.planning.fingerprint import (
    DatasetFingerprint,
    extract_fingerprint,
    fingerprint_case,
    intensity_statistics,
    stale_reason,
    weighted_percentiles,
)


def test_case_is_cropped_to_its_nonzero_region_and_foreground_collected():
    image = np.zeros((1, 10, 12, 14), dtype=np.float32)
    image[0, 2:8, 3:9, 4:10] = 5.0
    seg = np.zeros((1, 10, 12, 14), dtype=np.int16)
    seg[0, 3:5, 4:6, 5:7] = 1
    case = fingerprint_case(image, seg, (2.0, 1.0, 1.0), max_values=10_000)
    assert case.shape_after_crop == (6, 6, 6)
    assert case.relative_size_after_crop == pytest.approx(216 / (10 * 12 * 14))
    assert case.foreground_values.shape == (1, 8)
    assert np.all(case.foreground_values == 5.0)
    assert case.spacing == (2.0, 1.0, 1.0)


def test_large_foreground_is_subsampled_deterministically():
    image = np.arange(1, 1001, dtype=np.float32).reshape(1, 10, 10, 10)
    seg = np.ones((1, 10, 10, 10), dtype=np.int16)
    first = fingerprint_case(image, seg, (1, 1, 1), max_values=100)
    second = fingerprint_case(image, seg, (1, 1, 1), max_values=100)
    assert first.foreground_values.shape == (1, 100)
    assert np.array_equal(first.foreground_values, second.foreground_values)
    assert len(np.unique(first.foreground_values)) == 100  # without replacement


def test_every_case_weighs_the_same_as_in_equal_size_sampling():
    rng = np.random.default_rng(0)
    small = rng.normal(0, 1, 2_000)
    large = rng.normal(10, 1, 100_000)
    stats = intensity_statistics([small, large])
    # The method draws the same number of samples from each case: equal weights per case.
    sampled = np.concatenate([rng.choice(small, 200_000), rng.choice(large, 200_000)])
    assert stats.mean == pytest.approx(sampled.mean(), abs=0.05)
    assert stats.std == pytest.approx(sampled.std(), abs=0.05)
    assert stats.percentile_99_5 == pytest.approx(np.percentile(sampled, 99.5), abs=0.1)
    assert stats.percentile_00_5 == pytest.approx(np.percentile(sampled, 0.5), abs=0.1)
    assert stats.min == min(small.min(), large.min())


def test_weighted_percentiles_of_equal_weights_match_numpy():
    values = np.random.default_rng(1).normal(size=10_001)
    ours = weighted_percentiles(values, np.ones_like(values), (0.5, 50, 99.5))
    assert np.allclose(ours, np.percentile(values, (0.5, 50, 99.5)), atol=1e-3)


def test_no_foreground_anywhere_gives_nan_statistics():
    stats = intensity_statistics([np.array([], dtype=np.float32)])
    assert np.isnan(stats.mean)


def test_dataset_fingerprint_in_one_or_two_processes_and_round_trip(make_dataset, tmp_path: Path):
    folder = make_dataset("Dataset013_Fp", num_cases=3, shape=(10, 12, 12), spacing=(2.0, 1.0, 1.0))
    cases = training_cases(folder, load_dataset_json(folder / "dataset.json"))
    one = extract_fingerprint(cases, "SimpleITKIO", num_processes=1)
    two = extract_fingerprint(cases, "SimpleITKIO", num_processes=2)
    assert one == two
    assert one.spacings == [(2.0, 1.0, 1.0)] * 3
    assert one.shapes_after_crop == [(10, 12, 12)] * 3
    assert one.median_relative_size_after_cropping == 1.0
    one.save(tmp_path / "fp.json")
    assert DatasetFingerprint.load(tmp_path / "fp.json") == one


def test_fingerprint_records_its_cases_and_tells_when_they_changed(make_dataset, tmp_path: Path):
    folder = make_dataset("Dataset015_Fresh", num_cases=2, shape=(8, 8, 8))
    cases = training_cases(folder, load_dataset_json(folder / "dataset.json"))
    fingerprint = extract_fingerprint(cases, "SimpleITKIO")
    fingerprint.save(tmp_path / "fp.json")
    loaded = DatasetFingerprint.load(tmp_path / "fp.json")
    assert loaded.provenance == fingerprint.provenance
    assert set(loaded.provenance["cases"]) == {"case_000", "case_001"}
    assert stale_reason(loaded, cases, "SimpleITKIO") is None
    assert "read with NibabelIO" in stale_reason(loaded, cases, "NibabelIO")
    assert stale_reason(loaded, cases[:1], "SimpleITKIO") == (
        "the dataset changed since: 1 case(s) removed (case_001)"
    )
    label = cases[0].label
    stamp = label.stat().st_mtime_ns + 10**9
    os.utime(label, ns=(stamp, stamp))
    assert "1 case(s) changed (case_000)" in stale_reason(loaded, cases, "SimpleITKIO")
    legacy = DatasetFingerprint.from_json({**fingerprint.to_json(), "provenance": None})
    assert "no record" in stale_reason(legacy, cases, "SimpleITKIO")
