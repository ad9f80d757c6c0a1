"""verify_dataset: one test per class of bad input, all problems in one run, parallel == sequential."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.errors import Problem, ProblemsFound
from autoseg.integrity import verify_dataset, verify_or_raise

SHAPE = (8, 8, 8)


def _errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.is_error]


def _only(problems: list[Problem], severity: str = "error") -> Problem:
    assert len(problems) == 1, "\n".join(str(p) for p in problems)
    assert problems[0].severity == severity
    assert problems[0].fix
    return problems[0]


def _image(folder: Path, case: int = 0, channel: int = 0, ending: str = ".nii.gz") -> Path:
    return folder / "imagesTr" / f"case_{case:03d}_{channel:04d}{ending}"


def _label(folder: Path, case: int = 0, ending: str = ".nii.gz") -> Path:
    return folder / "labelsTr" / f"case_{case:03d}{ending}"


def _ramp(shape) -> np.ndarray:
    """A non-constant image (a constant one is warned about)."""
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def _seg(*values: int) -> np.ndarray:
    seg = np.zeros(SHAPE, dtype=np.uint8)
    for i, value in enumerate(values):
        seg[1 + i, 1:-1, 1:-1] = value
    return seg


def test_clean_dataset_has_no_problems(make_dataset):
    folder = make_dataset(channels=("T1", "T2"))
    assert verify_dataset(folder, num_processes=1) == []
    assert verify_or_raise(folder, num_processes=1) == []


def test_clean_region_and_ignore_dataset(make_dataset):
    labels = {"background": 0, "whole": [1, 2], "core": 2, "ignore": 3}
    folder = make_dataset(labels=labels, extra_json={"regions_class_order": [1, 2]})
    assert verify_dataset(folder, num_processes=1) == []


def test_dataset_json_problems_are_returned(make_dataset):
    folder = make_dataset(extra_json={"numTraining": "two"})
    problem = _only(verify_dataset(folder, num_processes=1))
    assert '"numTraining"' in problem.message
    assert problem.location.endswith("dataset.json")


def test_missing_dataset_json(tmp_path):
    assert "does not exist" in _only(verify_dataset(tmp_path, num_processes=1)).message


def test_discovery_problems_are_included(make_dataset):
    folder = make_dataset(num_cases=3)
    _label(folder, 1).unlink()
    problem = _only(verify_dataset(folder, num_processes=1))
    assert "label of case case_001 is missing" in problem.message


def test_labels_not_consecutive(make_dataset):
    folder = make_dataset(labels={"background": 0, "a": 1, "b": 3})
    problem = _only(verify_dataset(folder, num_processes=1))
    assert "not consecutive" in problem.message
    assert "[2]" in problem.message


def test_reader_not_determinable(make_dataset):
    folder = make_dataset(extra_json={"overwrite_image_reader_writer": "NoSuchIO"})
    problem = _only(verify_dataset(folder, num_processes=1))
    assert "no image reader" in problem.message
    assert "NoSuchIO" in problem.message


def test_unsupported_file_ending(make_dataset):
    folder = make_dataset()
    for path in [*folder.glob("*/*.nii.gz")]:
        path.rename(path.with_name(path.name.replace(".nii.gz", ".xyz")))
    data = make_dataset.read_json(folder)
    make_dataset.write_json(folder, {**data, "file_ending": ".xyz"})
    assert "no image reader" in _only(verify_dataset(folder, num_processes=1)).message


def test_label_values_not_in_dataset_json(make_dataset):
    folder = make_dataset()
    make_dataset.write_image(_label(folder), _seg(1, 2, 5, 7))
    problem = _only(verify_dataset(folder, num_processes=1))
    assert problem.location == str(_label(folder))
    assert "5, 7" in problem.message


def test_ignore_label_values_are_allowed(make_dataset):
    folder = make_dataset(labels={"background": 0, "a": 1, "ignore": 2})
    assert verify_dataset(folder, num_processes=1) == []


def test_non_integer_label_values(make_dataset):
    folder = make_dataset()
    seg = _seg(1, 2).astype(np.float32)
    seg[0, 0, 0] = 1.5
    make_dataset.write_image(_label(folder), seg)
    assert "non-integer values: 1.5" in _only(verify_dataset(folder, num_processes=1)).message


# ITK's NIfTI reader turns NaN into 0, so NaN tests use MetaImage, which keeps them.
def test_nan_in_label(make_dataset):
    folder = make_dataset(file_ending=".mha")
    seg = _seg(1, 2).astype(np.float32)
    seg[0, 0, 0] = np.nan
    make_dataset.write_image(_label(folder, ending=".mha"), seg)
    assert "NaN or infinite" in _only(verify_dataset(folder, num_processes=1)).message


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_image(make_dataset, bad):
    folder = make_dataset(file_ending=".mha")
    image = np.ones(SHAPE, dtype=np.float32)
    image[2, 3, 4] = bad
    make_dataset.write_image(_image(folder, 1, ending=".mha"), image)
    problem = _only(verify_dataset(folder, num_processes=1))
    assert problem.location == str(_image(folder, 1, ending=".mha"))
    assert "1 NaN or infinite" in problem.message


def test_channel_count_differs_from_channel_names(make_dataset):
    folder = make_dataset()
    volume = sitk.GetImageFromArray(_ramp(SHAPE))
    sitk.WriteImage(sitk.JoinSeries([volume, volume]), str(_image(folder)))
    problem = _only(verify_dataset(folder, num_processes=1))
    assert "2 channel(s); the channel_names of this dataset list 1" in problem.message


def test_shape_mismatch_between_channels(make_dataset):
    folder = make_dataset(channels=("T1", "T2"))
    make_dataset.write_image(_image(folder, 0, 1), _ramp((8, 8, 6)))
    problem = _only(verify_dataset(folder, num_processes=1))
    assert problem.location == str(_image(folder, 0, 1))
    assert "channel shape (8, 8, 6)" in problem.message


def test_spacing_mismatch_between_channels(make_dataset):
    folder = make_dataset(channels=("T1", "T2"))
    make_dataset.write_image(_image(folder, 0, 1), _ramp(SHAPE), spacing=(2.0, 1.0, 1.0))
    assert "channel spacing" in _only(verify_dataset(folder, num_processes=1)).message


def test_shape_mismatch_image_label(make_dataset):
    folder = make_dataset()
    make_dataset.write_image(_label(folder), np.ones((8, 8, 9), dtype=np.uint8))
    assert "label shape (8, 8, 9)" in _only(verify_dataset(folder, num_processes=1)).message


def test_spacing_mismatch_image_label(make_dataset):
    folder = make_dataset()
    make_dataset.write_image(_label(folder), _seg(1, 2), spacing=(1.0, 1.0, 3.0))
    assert "label spacing" in _only(verify_dataset(folder, num_processes=1)).message


def test_origin_mismatch_is_a_warning(make_dataset):
    folder = make_dataset()
    make_dataset.write_image(_label(folder), _seg(1, 2), origin=(5.0, 0.0, 0.0))
    problem = _only(verify_dataset(folder, num_processes=1), "warning")
    assert "label origin" in problem.message
    assert verify_or_raise(folder, num_processes=1) == [problem]


def test_direction_mismatch_is_a_warning(make_dataset):
    folder = make_dataset(channels=("T1", "T2"))
    flipped = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    make_dataset.write_image(_image(folder, 1, 1), _ramp(SHAPE), direction=flipped)
    warnings = verify_dataset(folder, num_processes=1)
    assert {p.severity for p in warnings} == {"warning"}
    assert any("channel direction" in p.message for p in warnings)


def test_empty_label_map_is_a_warning(make_dataset):
    folder = make_dataset()
    make_dataset.write_image(_label(folder, 1), _seg())
    problem = _only(verify_dataset(folder, num_processes=1), "warning")
    assert "only background" in problem.message


def test_unreadable_file(make_dataset):
    folder = make_dataset()
    _image(folder, 1).write_bytes(b"this is not an image")
    problem = _only(verify_dataset(folder, num_processes=1))
    assert problem.location == str(_image(folder, 1))
    assert "cannot be read" in problem.message


def _broken_in_many_ways(make_dataset) -> Path:
    folder = make_dataset(num_cases=5, file_ending=".mha", extra_json={"numTraining": 6})
    write = make_dataset.write_image
    write(_label(folder, 0, ".mha"), _seg(1, 9))  # unknown label value
    image = np.ones(SHAPE, dtype=np.float32)
    image[0, 0, 0] = np.nan
    write(_image(folder, 1, ending=".mha"), image)  # NaN
    write(_label(folder, 2, ".mha"), np.ones((4, 4, 4), dtype=np.uint8))  # shape
    _image(folder, 3, ending=".mha").write_bytes(b"garbage")  # unreadable
    write(_label(folder, 4, ".mha"), _seg())  # empty label (warning)
    (folder / "labelsTr" / "orphan.mha").write_bytes(b"")  # label without image (warning)
    return folder


def test_all_problems_are_reported_in_one_run(make_dataset):
    folder = _broken_in_many_ways(make_dataset)
    problems = verify_dataset(folder, num_processes=1)
    text = "\n".join(str(p) for p in problems)
    for needle in [
        '"numTraining" is 6 but 5',
        "values 9 that dataset.json does not define",
        "NaN or infinite",
        "label shape (4, 4, 4)",
        "cannot be read",
        "only background",
        "orphan.mha",
    ]:
        assert needle in text, needle
    assert len(_errors(problems)) == 5
    with pytest.raises(ProblemsFound) as info:
        verify_or_raise(folder, num_processes=1)
    assert info.value.problems == problems
    assert "5 error(s) found." in str(info.value)


def test_problems_are_ordered_by_case(make_dataset):
    problems = verify_dataset(_broken_in_many_ways(make_dataset), num_processes=1)
    per_case = [p.location for p in problems if "case_00" in p.location]
    cases = [Path(loc).name[:8] for loc in per_case]
    assert cases == sorted(cases)


def test_parallel_equals_sequential(make_dataset):
    folder = _broken_in_many_ways(make_dataset)
    assert verify_dataset(folder, num_processes=2) == verify_dataset(folder, num_processes=1)


def test_real_hippocampus_has_no_errors(shared_hippocampus):
    start = time.perf_counter()
    problems = verify_dataset(shared_hippocampus, num_processes=1)
    assert _errors(problems) == []
    assert time.perf_counter() - start < 30


def test_reader_warnings_become_problems(make_dataset):
    folder = make_dataset(num_cases=1, file_ending=".tif", extra_json={"numTraining": 1})
    problems = verify_dataset(folder, num_processes=1)
    assert problems
    assert {p.severity for p in problems} == {"warning"}
    assert any("spacing" in p.message and p.fix for p in problems)


def test_nan_in_nifti_is_a_warning_saying_it_becomes_zero(make_dataset):
    folder = make_dataset()
    image = np.ones(SHAPE, dtype=np.float32)
    image[1, 2, 3] = np.nan
    make_dataset.write_image(_image(folder, 1), image)
    problem = _only(verify_dataset(folder, num_processes=1), "warning")
    assert problem.location == str(_image(folder, 1))
    assert "1 voxel(s) are NaN or infinite" in problem.message
    assert "read as 0" in problem.message


def test_two_d_image_in_a_three_d_dataset_is_named(make_dataset):
    folder = make_dataset(num_cases=3)
    make_dataset.write_image(_image(folder, 1), _ramp(SHAPE[1:]))
    errors = _errors(verify_dataset(folder, num_processes=1))
    assert errors[0].location == str(_image(folder, 1))
    assert "is a 2D image, but the images of this dataset are 3D" in errors[0].message


def test_a_float_label_with_foreground_is_not_called_background_only(make_dataset):
    folder = make_dataset()
    seg = np.zeros(SHAPE, dtype=np.float32)
    seg[2:4] = 1.2
    make_dataset.write_image(_label(folder), seg)
    problem = _only(verify_dataset(folder, num_processes=1))
    assert "non-integer values: 1.2" in problem.message


def test_a_label_in_no_case_is_a_warning_and_no_foreground_at_all_an_error(make_dataset):
    folder = make_dataset()
    labels = {"background": 0, "a": 1, "b": 2, "c": 3}
    make_dataset.write_json(folder, {**make_dataset.read_json(folder), "labels": labels})
    problem = _only(verify_dataset(folder, num_processes=1), "warning")
    assert problem.message == 'label 3 ("c") occurs in no label file.'
    for case in (0, 1):
        make_dataset.write_image(_label(folder, case), _seg())
    errors = _errors(verify_dataset(folder, num_processes=1))
    assert [e.message for e in errors] == ["no label file contains any foreground label [1, 2, 3]."]


def test_a_folder_named_like_an_image_is_named(make_dataset):
    folder = make_dataset()
    _image(folder, 1).unlink()
    _image(folder, 1).mkdir()
    problems = verify_dataset(folder, num_processes=1)
    assert any(
        p.location == str(_image(folder, 1)) and "is a folder" in p.message for p in problems
    )
