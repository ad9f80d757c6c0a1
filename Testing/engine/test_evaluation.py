from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.errors import AutoSegError
from autoseg.evaluation import (
    METRICS,
    case_metrics,
    confusion_counts,
    evaluate_folders,
    evaluated_regions,
    load_summary,
    region_key,
    region_or_label_mask,
    summarize,
)
from autoseg.labels import LabelSpec
from autoseg.preprocessing.case import class_location_key

PLAIN = LabelSpec.from_json({"background": 0, "a": 1, "b": 2})
WITH_IGNORE = LabelSpec.from_json({"background": 0, "a": 1, "b": 2, "ignore": 3})
REGIONS = LabelSpec.from_json({"background": 0, "whole": [1, 2], "core": 2}, [1, 2])


def arr(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint8)


def test_label_metrics_by_hand():
    metrics = case_metrics(arr(0, 1, 1, 2, 2, 0), arr(0, 1, 0, 2, 1, 1), PLAIN)
    assert list(metrics) == ["1", "2"]
    # label 1: ref {1, 2}, pred {1, 4, 5}; label 2: ref {3, 4}, pred {3}
    assert metrics["1"] == {
        "Dice": 0.4, "IoU": 0.25, "TP": 1, "FP": 2, "FN": 1, "TN": 2, "n_pred": 3, "n_ref": 2,
    }  # fmt: skip
    assert metrics["2"]["Dice"] == pytest.approx(2 / 3)
    assert metrics["2"]["IoU"] == 0.5
    assert (metrics["2"]["TP"], metrics["2"]["FP"], metrics["2"]["FN"]) == (1, 0, 1)


def test_nan_rules_for_empty_masks():
    metrics = case_metrics(arr(0, 0, 0, 0), arr(0, 1, 0, 0), PLAIN)
    # label 1: empty reference but a false positive -> 0; label 2: both empty -> NaN
    assert metrics["1"]["Dice"] == 0.0
    assert metrics["1"]["IoU"] == 0.0
    assert math.isnan(metrics["2"]["Dice"])
    assert math.isnan(metrics["2"]["IoU"])
    assert metrics["2"]["TN"] == 4
    missed = case_metrics(arr(0, 2, 2, 0), arr(0, 0, 0, 0), PLAIN)
    assert missed["2"]["Dice"] == 0.0
    assert missed["2"]["n_ref"] == 2


def test_reference_ignore_voxels_count_nowhere():
    reference = arr(0, 1, 3, 3, 2)
    prediction = arr(0, 1, 1, 2, 0)
    metrics = case_metrics(reference, prediction, WITH_IGNORE)
    assert metrics["1"] == {
        "Dice": 1.0, "IoU": 1.0, "TP": 1, "FP": 0, "FN": 0, "TN": 2, "n_pred": 1, "n_ref": 1,
    }  # fmt: skip
    assert metrics["2"]["FN"] == 1
    assert metrics["2"]["FP"] == 0
    assert "3" not in metrics


def test_regions_are_unions_of_labels():
    assert evaluated_regions(REGIONS) == [(1, 2), (2,)]
    metrics = case_metrics(arr(0, 1, 2, 2), arr(1, 1, 1, 2), REGIONS)
    assert list(metrics) == ["(1, 2)", "2"]
    whole, core = metrics["(1, 2)"], metrics["2"]
    assert (whole["TP"], whole["FP"], whole["FN"], whole["TN"]) == (3, 1, 0, 0)
    assert whole["Dice"] == pytest.approx(6 / 7)
    assert (core["TP"], core["FP"], core["FN"], core["TN"]) == (1, 0, 1, 2)


def test_region_key_and_masks():
    for region in [1, (1,), (1, 2), (3, 1, 2)]:
        assert region_key(region) == class_location_key(region)
    seg = arr(0, 1, 2, 3)
    np.testing.assert_array_equal(region_or_label_mask(seg, (1, 3)), [False, True, False, True])
    np.testing.assert_array_equal(region_or_label_mask(seg, 2), [False, False, True, False])


@pytest.mark.parametrize("labels", [PLAIN, WITH_IGNORE, REGIONS])
def test_confusion_matrix_path_matches_per_region_masks(labels):
    rng = np.random.default_rng(1)
    reference = rng.integers(0, 4, size=(7, 6, 5)).astype(np.int16)
    prediction = rng.integers(-1, 9, size=(7, 6, 5)).astype(np.int16)  # stray values too
    ignore = None if labels.ignore_label is None else reference == labels.ignore_label
    metrics = case_metrics(reference, prediction, labels)
    for region in evaluated_regions(labels):
        counts = confusion_counts(reference, prediction, region, ignore)
        entry = metrics[region_key(region)]
        assert {k: entry[k] for k in counts} == counts


def test_summary_means_are_nanmean_over_cases_and_macro_over_labels():
    def case(d1: float, d2: float) -> dict[str, dict[str, float]]:
        return {k: dict.fromkeys(METRICS, v) for k, v in (("1", d1), ("2", d2))}

    summary = summarize([case(1.0, 0.0), case(0.5, math.nan)])
    assert summary["mean"]["1"]["Dice"] == 0.75
    assert summary["mean"]["2"]["Dice"] == 0.0  # NaN case skipped
    # macro: mean of the label means (0.375), not the mean of all case values (0.5)
    assert summary["foreground_mean"]["Dice"] == 0.375
    never_scored = summarize([case(1.0, math.nan), case(0.5, math.nan)])
    assert math.isnan(never_scored["mean"]["2"]["Dice"])
    assert math.isnan(never_scored["foreground_mean"]["Dice"])


def test_summary_of_nothing_is_nan():
    summary = summarize([])
    assert summary["mean"] == {}
    assert all(math.isnan(v) for v in summary["foreground_mean"].values())


def write_seg(path: Path, values: list[int], shape: tuple[int, ...] = (2, 2, 2)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.array(values, dtype=np.uint8).reshape(shape))
    sitk.WriteImage(image, str(path))


def two_cases(root: Path) -> tuple[Path, Path]:
    ref, pred = root / "ref", root / "pred"
    write_seg(ref / "a.nii.gz", [0, 1, 1, 0, 2, 2, 0, 0])
    write_seg(pred / "a.nii.gz", [0, 1, 0, 0, 2, 2, 0, 0])
    write_seg(ref / "b.nii.gz", [0, 1, 1, 1, 0, 0, 0, 0])
    write_seg(pred / "b.nii.gz", [0, 1, 1, 1, 0, 0, 0, 0])
    return ref, pred


def test_evaluate_folders_writes_a_strict_json_summary(tmp_path):
    ref, pred = two_cases(tmp_path)
    summary = evaluate_folders(ref, pred, PLAIN, ".nii.gz")
    cases = summary["metric_per_case"]
    assert [Path(c["prediction_file"]).name for c in cases] == ["a.nii.gz", "b.nii.gz"]
    assert cases[0]["metrics"]["1"]["Dice"] == pytest.approx(2 / 3)
    assert math.isnan(cases[1]["metrics"]["2"]["Dice"])
    assert summary["mean"]["1"]["Dice"] == pytest.approx((2 / 3 + 1) / 2)
    assert summary["mean"]["2"]["Dice"] == 1.0
    assert summary["foreground_mean"]["Dice"] == pytest.approx(((2 / 3 + 1) / 2 + 1) / 2)

    def reject(token: str) -> None:
        raise AssertionError(f"summary.json contains {token}")

    text = (pred / "summary.json").read_text()
    on_disk = json.loads(text, parse_constant=reject)
    assert on_disk["metric_per_case"][1]["metrics"]["2"]["Dice"] is None
    assert list(on_disk) == ["foreground_mean", "mean", "metric_per_case"]
    loaded = load_summary(pred / "summary.json")
    assert math.isnan(loaded["metric_per_case"][1]["metrics"]["2"]["IoU"])
    assert loaded["mean"] == summary["mean"]


def test_missing_predictions_are_listed_unless_allowed(tmp_path):
    ref, pred = two_cases(tmp_path)
    (pred / "b.nii.gz").unlink()
    with pytest.raises(AutoSegError, match=r"predictions missing for b\.nii\.gz"):
        evaluate_folders(ref, pred, PLAIN, ".nii.gz")
    out = tmp_path / "elsewhere" / "summary.json"
    summary = evaluate_folders(ref, pred, PLAIN, ".nii.gz", output_file=out, allow_missing=True)
    assert len(summary["metric_per_case"]) == 1
    assert out.is_file()


def test_predictions_without_reference_or_with_another_shape_fail(tmp_path):
    ref, pred = two_cases(tmp_path)
    write_seg(pred / "c.nii.gz", [0] * 8)
    with pytest.raises(AutoSegError, match=r"no reference .* for c\.nii\.gz"):
        evaluate_folders(ref, pred, PLAIN, ".nii.gz", allow_missing=True)
    (pred / "c.nii.gz").unlink()
    write_seg(pred / "b.nii.gz", [0] * 12, shape=(3, 2, 2))
    with pytest.raises(AutoSegError, match=r"b\.nii\.gz: prediction shape"):
        evaluate_folders(ref, pred, PLAIN, ".nii.gz")


def test_evaluation_never_imports_torch():
    code = "import sys, autoseg.evaluation; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def _tiff_stack(path: Path, seg: np.ndarray, spacing=(2.0, 1.0, 1.0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(seg), str(path))
    path.with_suffix(".json").write_text(json.dumps({"spacing": list(spacing)}))


def test_3d_tiff_stacks_are_evaluated_with_the_dataset_reader(tmp_path):
    """The 2D reader would refuse a stack; the choice follows the files, like the dataset's."""
    seg = np.zeros((4, 6, 6), dtype=np.uint8)
    seg[1:3, 2:4, 2:4] = 1
    _tiff_stack(tmp_path / "ref" / "a.tif", seg)
    _tiff_stack(tmp_path / "pred" / "a.tif", seg)
    summary = evaluate_folders(tmp_path / "ref", tmp_path / "pred", PLAIN, ".tif")
    assert summary["mean"]["1"]["Dice"] == 1.0
    forced = evaluate_folders(tmp_path / "ref", tmp_path / "pred", PLAIN, ".tif", reader="Tiff3DIO")
    assert forced["mean"]["1"]["Dice"] == 1.0
    with pytest.raises(AutoSegError, match="overwrite_image_reader_writer") as error:
        evaluate_folders(
            tmp_path / "ref", tmp_path / "pred", PLAIN, ".tif", reader="NaturalImage2DIO"
        )
    assert "a.tif" in str(error.value)
