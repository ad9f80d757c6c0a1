from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.errors import AutoSegError
from autoseg.labels import LabelSpec
from autoseg.postprocessing import (
    POSTPROCESSING_FILE,
    Postprocessing,
    PostprocessingRule,
    apply_postprocessing_folder,
    determine_postprocessing,
    keep_largest_component,
)

ONE = LabelSpec.from_json({"background": 0, "a": 1})
TWO = LabelSpec.from_json({"background": 0, "a": 1, "b": 2})
REGIONS = LabelSpec.from_json({"background": 0, "whole": [1, 2], "core": 2}, [1, 2])
FOREGROUND = PostprocessingRule("largest_foreground", None)
ENDING = ".nii.gz"


def per_region(*labels: int) -> PostprocessingRule:
    return PostprocessingRule("largest_per_region", labels)


def write(path: Path, array: np.ndarray, spacing=None, origin=None, direction=None) -> Path:
    """Write an (x, y, z) or (y, z) array; spacing etc. in SimpleITK order."""
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8))
    if spacing is not None:
        image.SetSpacing(spacing)
    if origin is not None:
        image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def write_cases(folder: Path, cases: dict[str, np.ndarray]) -> None:
    for name, array in cases.items():
        write(folder / f"{name}{ENDING}", array)


# ---------------------------------------------------------------- keep_largest_component


def test_foreground_rule_removes_a_far_blob_and_leaves_the_input_alone():
    seg = np.zeros((10, 10, 10), dtype=np.uint8)
    seg[1:5, 1:5, 1:5] = 1
    seg[2:4, 2:4, 2:4] = 2  # a second label inside the same foreground component
    seg[8, 8, 8] = 2
    out = keep_largest_component(seg, None)
    assert out[8, 8, 8] == 0
    expected = seg.copy()
    expected[8, 8, 8] = 0
    np.testing.assert_array_equal(out, expected)
    assert seg[8, 8, 8] == 2  # a copy, never in place


def test_components_use_full_connectivity_in_3d():
    seg = np.zeros((8, 8, 8), dtype=np.uint8)
    seg[0, 0, 0] = seg[1, 1, 1] = 1  # touch only at a corner: one component with 26-connectivity
    seg[5, 5, 5] = 1
    out = keep_largest_component(seg, 1)
    assert out[0, 0, 0] == out[1, 1, 1] == 1
    assert out[5, 5, 5] == 0


def test_a_label_rule_only_touches_that_label_and_regions_are_unions():
    seg = np.zeros((12, 12, 12), dtype=np.uint8)
    seg[0:3, 0:3, 0:3] = 1
    seg[10, 10, 10] = 1
    seg[0:2, 8:10, 0:2] = 2
    seg[6, 6, 11] = 2
    out = keep_largest_component(seg, 1)
    assert out[10, 10, 10] == 0
    assert out[6, 6, 11] == 2  # label 2's small component survives
    np.testing.assert_array_equal(keep_largest_component(seg, (1,)), out)
    union = keep_largest_component(seg, (1, 2))  # the 27-voxel label-1 cube is the largest
    assert union[0:3, 0:3, 0:3].min() == 1
    assert np.count_nonzero(union) == 27


def test_2d_arrays_use_eight_connectivity():
    seg = np.zeros((6, 6), dtype=np.uint8)
    seg[0, 0] = seg[1, 1] = 3
    seg[4, 4] = 3
    out = keep_largest_component(seg, None)
    assert out[0, 0] == out[1, 1] == 3
    assert out[4, 4] == 0


def test_empty_or_single_component_is_unchanged():
    empty = np.zeros((4, 4, 4), dtype=np.uint8)
    np.testing.assert_array_equal(keep_largest_component(empty, None), empty)
    one = empty.copy()
    one[1:3, 1:3, 1:3] = 1
    np.testing.assert_array_equal(keep_largest_component(one, 1), one)
    np.testing.assert_array_equal(keep_largest_component(one, 2), one)  # absent label


# ---------------------------------------------------------------- rules and JSON


def test_rules_are_validated_and_normalised():
    assert PostprocessingRule("largest_per_region", [1, 2]).region == (1, 2)
    assert PostprocessingRule("largest_per_region", 3).region == (3,)
    for kind, region in [
        ("largest_foreground", (1,)),
        ("largest_per_region", None),
        ("largest_per_region", ()),
        ("largest_per_region", (0,)),
        ("largest_per_region", (True,)),
        ("smallest", None),
    ]:
        with pytest.raises(ValueError, match="invalid rule"):
            PostprocessingRule(kind, region)  # type: ignore[arg-type]


def test_json_round_trip_writes_strict_json(tmp_path: Path):
    scores = {
        "foreground_mean": {"Dice": 0.5},
        "mean": {"1": {"Dice": 0.5}, "2": {"Dice": math.nan}},
    }
    pp = Postprocessing((FOREGROUND, per_region(1, 2)), scores, {"foreground_mean": {"Dice": 0.7}})
    target = pp.save(tmp_path)
    assert target == tmp_path / POSTPROCESSING_FILE
    text = target.read_text(encoding="utf-8")
    assert "NaN" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert data["rules"][1] == {"kind": "largest_per_region", "region": [1, 2]}
    loaded = Postprocessing.load(target)
    assert loaded.rules == pp.rules
    assert loaded.after == pp.after
    assert math.isnan(loaded.before["mean"]["2"]["Dice"])
    assert Postprocessing.load(tmp_path).rules == pp.rules  # a folder means its json
    plain = Postprocessing((per_region(2),), {"x": {"Dice": 1.0}}, {})
    assert Postprocessing.from_json(plain.to_json()) == plain


def test_pickle_paths_are_refused_with_a_pointer_to_the_json(tmp_path: Path):
    pkl = tmp_path / "postprocessing.pkl"
    pkl.write_bytes(b"\x80\x04 not really a pickle")
    with pytest.raises(AutoSegError, match="never reads pickle") as caught:
        Postprocessing.load(pkl)
    assert str(tmp_path / POSTPROCESSING_FILE) in str(caught.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{broken", "cannot be read as JSON"),
        ('{"rules": [{"kind": "largest_foreground", "region": [1]}]}', "not valid"),
        ('{"rules": [{"region": [1]}]}', "not valid"),
        ('{"rules": [3]}', "not valid"),
        ('{"postprocessing_fns": ["my_fn"], "postprocessing_kwargs": [{}]}', "nnU-Net"),
        ('{"rules": [], "before": []}', "'before' and 'after'"),
    ],
)
def test_missing_or_malformed_files_are_clear_errors(tmp_path: Path, content, message):
    path = tmp_path / POSTPROCESSING_FILE
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(AutoSegError, match=message) as caught:
        Postprocessing.load(path)
    assert str(path) in str(caught.value)


# ---------------------------------------------------------------- determine_postprocessing


def cube(seg: np.ndarray, value: int, start: tuple[int, int, int], size: int) -> None:
    seg[tuple(slice(s, s + size) for s in start)] = value


def test_foreground_rule_accepted_when_it_removes_a_spurious_blob(tmp_path: Path):
    reference = np.zeros((12, 12, 12), dtype=np.uint8)
    cube(reference, 1, (1, 1, 1), 4)
    prediction = reference.copy()
    cube(prediction, 1, (9, 9, 9), 2)
    write_cases(tmp_path / "ref", {"a": reference, "b": reference})
    write_cases(tmp_path / "cv", {"a": prediction, "b": reference})

    pp = determine_postprocessing(tmp_path / "cv", tmp_path / "ref", ONE, ENDING)

    assert pp.rules == (FOREGROUND,)
    assert pp.before["foreground_mean"]["Dice"] < pp.after["foreground_mean"]["Dice"] == 1.0
    np.testing.assert_array_equal(read(tmp_path / "postprocessed" / f"a{ENDING}"), reference)
    assert Postprocessing.load(tmp_path / POSTPROCESSING_FILE).rules == pp.rules
    after = json.loads((tmp_path / "postprocessed" / "summary.json").read_text(encoding="utf-8"))
    assert after["foreground_mean"]["Dice"] == 1.0
    assert after["metric_per_case"][0]["prediction_file"].endswith(f"postprocessed/a{ENDING}")
    raw = json.loads((tmp_path / "cv" / "summary.json").read_text(encoding="utf-8"))
    assert raw["foreground_mean"]["Dice"] == pytest.approx(pp.before["foreground_mean"]["Dice"])


def test_rule_rejected_when_it_would_drop_a_real_second_component(tmp_path: Path):
    reference = np.zeros((12, 12, 12), dtype=np.uint8)
    cube(reference, 1, (1, 1, 1), 4)
    cube(reference, 1, (8, 8, 8), 3)  # e.g. the second kidney
    prediction = reference.copy()
    prediction[1, 1, 1] = 0
    write_cases(tmp_path / "ref", {"a": reference})
    write_cases(tmp_path / "cv", {"a": prediction})

    pp = determine_postprocessing(
        tmp_path / "cv", tmp_path / "ref", ONE, ENDING, output_dir=tmp_path / "out"
    )

    assert pp.rules == ()
    assert pp.after == pp.before
    np.testing.assert_array_equal(read(tmp_path / "out" / f"a{ENDING}"), prediction)


def test_per_label_rule_accepted_only_for_the_label_that_benefits(tmp_path: Path):
    reference = np.zeros((12, 12, 12), dtype=np.uint8)
    cube(reference, 1, (1, 1, 1), 4)
    cube(reference, 2, (1, 7, 1), 4)
    cube(reference, 2, (7, 7, 7), 4)  # label 2 really has two components
    prediction = reference.copy()
    cube(prediction, 1, (9, 1, 9), 2)  # spurious label-1 blob
    write_cases(tmp_path / "ref", {"a": reference})
    write_cases(tmp_path / "cv", {"a": prediction})

    pp = determine_postprocessing(tmp_path / "cv", tmp_path / "ref", TWO, ENDING)

    assert pp.rules == (per_region(1),)  # (a) would delete label 2's components
    assert pp.after["mean"]["1"]["Dice"] == 1.0 > pp.before["mean"]["1"]["Dice"]
    assert pp.after["mean"]["2"]["Dice"] == 1.0
    np.testing.assert_array_equal(read(tmp_path / "postprocessed" / f"a{ENDING}"), reference)


def test_regions_are_tried_one_after_another(tmp_path: Path):
    reference = np.zeros((12, 12, 12), dtype=np.uint8)
    cube(reference, 1, (1, 1, 1), 5)
    cube(reference, 2, (2, 2, 2), 3)  # core inside the first "whole" component
    cube(reference, 1, (8, 8, 1), 3)  # a real second "whole" component
    prediction = reference.copy()
    cube(prediction, 2, (9, 1, 9), 2)  # spurious core blob
    write_cases(tmp_path / "ref", {"a": reference})
    write_cases(tmp_path / "cv", {"a": prediction})

    pp = determine_postprocessing(tmp_path / "cv", tmp_path / "ref", REGIONS, ENDING)

    # (a) improves the foreground mean but lowers "whole", so it is rejected; only core's rule helps
    assert pp.rules == (per_region(2),)
    np.testing.assert_array_equal(read(tmp_path / "postprocessed" / f"a{ENDING}"), reference)


def test_region_rules_build_on_each_other(tmp_path: Path):
    labels = LabelSpec.from_json({"background": 0, "x": [1, 2], "y": 2, "z": 3}, [1, 2, 3])
    reference = np.zeros((14, 14, 14), dtype=np.uint8)
    cube(reference, 1, (1, 1, 1), 6)
    cube(reference, 2, (2, 2, 2), 3)
    cube(reference, 3, (10, 10, 10), 3)
    cube(reference, 3, (1, 10, 10), 3)  # z has two real components
    prediction = reference.copy()
    cube(prediction, 2, (11, 1, 1), 2)  # spurious y blob, also part of region x
    write_cases(tmp_path / "ref", {"a": reference})
    write_cases(tmp_path / "cv", {"a": prediction})

    pp = determine_postprocessing(tmp_path / "cv", tmp_path / "ref", labels, ENDING)

    # x's rule already removed the y blob, so y's own rule no longer improves y: not added
    assert pp.rules == (per_region(1, 2),)


def test_rules_that_change_nothing_are_not_accepted(tmp_path: Path):
    reference = np.zeros((10, 10, 10), dtype=np.uint8)
    cube(reference, 1, (1, 1, 1), 4)
    cube(reference, 2, (5, 1, 1), 3)  # touches label 1: one foreground component
    prediction = reference.copy()
    prediction[1, 1, 1] = 0
    write_cases(tmp_path / "ref", {"a": reference})
    write_cases(tmp_path / "cv", {"a": prediction})

    pp = determine_postprocessing(tmp_path / "cv", tmp_path / "ref", TWO, ENDING)

    assert pp.rules == ()


def test_predictions_without_reference_are_reported(tmp_path: Path):
    write_cases(tmp_path / "ref", {"a": np.zeros((3, 3, 3))})
    write_cases(tmp_path / "cv", {"a": np.zeros((3, 3, 3)), "zz": np.zeros((3, 3, 3))})
    with pytest.raises(AutoSegError, match=f"zz{ENDING}"):
        determine_postprocessing(tmp_path / "cv", tmp_path / "ref", ONE, ENDING)


# ---------------------------------------------------------------- apply_postprocessing_folder


def test_apply_to_a_folder_keeps_geometry_and_never_touches_the_input(tmp_path: Path):
    seg = np.zeros((6, 7, 8), dtype=np.uint8)
    cube(seg, 1, (0, 0, 0), 3)
    seg[5, 6, 7] = 1
    geometry = {
        "spacing": (0.5, 0.8, 2.0),
        "origin": (10.0, -5.0, 3.25),
        "direction": (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0),
    }
    source = write(tmp_path / "in" / f"c{ENDING}", seg, **geometry)
    pp = Postprocessing((FOREGROUND,))

    written = apply_postprocessing_folder(tmp_path / "in", tmp_path / "out", pp, ENDING)

    assert written == [tmp_path / "out" / f"c{ENDING}"]
    image, original = sitk.ReadImage(str(written[0])), sitk.ReadImage(str(source))
    assert image.GetSpacing() == original.GetSpacing()  # NIfTI stores float32: compare as read
    assert image.GetOrigin() == original.GetOrigin()
    assert image.GetDirection() == original.GetDirection() == geometry["direction"]
    assert np.allclose(image.GetSpacing(), geometry["spacing"])
    assert sitk.GetArrayFromImage(image)[5, 6, 7] == 0
    assert read(source)[5, 6, 7] == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"c{ENDING}"]  # no temp left
    with pytest.raises(AutoSegError, match="input folder"):
        apply_postprocessing_folder(tmp_path / "in", tmp_path / "in", pp, ENDING)


def test_apply_to_2d_files(tmp_path: Path):
    seg = np.zeros((6, 6), dtype=np.uint8)
    seg[0, 0] = seg[1, 1] = 2
    seg[4, 4] = 2
    source = write(tmp_path / "in" / f"c{ENDING}", seg, spacing=(0.25, 0.75))
    pp = Postprocessing((per_region(2),))

    (written,) = apply_postprocessing_folder(tmp_path / "in", tmp_path / "out", pp, ENDING)

    image = sitk.ReadImage(str(written))
    assert image.GetDimension() == 2
    assert image.GetSpacing() == sitk.ReadImage(str(source)).GetSpacing() == (0.25, 0.75)
    expected = seg.copy()
    expected[4, 4] = 0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), expected)
