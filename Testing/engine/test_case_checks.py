"""The per-case checks shared by verify, the fingerprint and preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.case_checks import (
    CaseRules,
    ReadFile,
    dataset_is_2d,
    grid_problems,
    image_value_problems,
    label_value_problems,
    label_voxel_counts,
    load_case,
)
from autoseg.dataset import CaseFiles
from autoseg.errors import AutoSegError
from autoseg.image_formats import Geometry
from autoseg.image_io import NaturalImage2DIO, SimpleITKIO, Tiff3DIO

RULES = CaseRules(num_channels=1, label_values=(0, 1, 2))
HERE = Path("label.nii.gz")
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _ramp(shape) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def _messages(problems) -> list[str]:
    return [f"{p.severity}: {p.message}" for p in problems]


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "int64"])
def test_label_counts_are_a_histogram_for_integers(dtype: str) -> None:
    array = np.array([0, 0, 1, 2, 2, 2], dtype=dtype)
    assert label_voxel_counts(array) == {0: 2, 1: 1, 2: 3}


def test_label_counts_of_negative_and_huge_values() -> None:
    assert label_voxel_counts(np.array([-1, 0, 0], np.int16)) == {-1: 1, 0: 2}
    assert label_voxel_counts(np.array([0, 2**40], np.int64)) == {0: 1, 2**40: 1}
    assert label_voxel_counts(np.array([0.0, 1.5, np.nan], np.float32)) == {0.0: 1, 1.5: 1}


def test_undeclared_negative_and_fractional_values_are_errors() -> None:
    problems, counts = label_value_problems(np.array([0, 1, 3, -1], np.int16), HERE, RULES)
    text = " | ".join(_messages(problems))
    assert "negative values -1" in text
    assert "values 3 that dataset.json does not define" in text
    assert counts == {-1: 1, 0: 1, 1: 1, 3: 1}
    problems, _ = label_value_problems(np.array([0, 1.2], np.float32), HERE, RULES)
    assert _messages(problems) == ["error: label contains non-integer values: 1.2."]


def test_a_mask_saved_as_0_255_is_told_to_store_the_label_value() -> None:
    problems, _ = label_value_problems(np.array([0, 255], np.uint8), Path("mask.png"), RULES)
    (problem,) = problems
    assert "values 255 that dataset.json does not define" in problem.message
    assert "0/255 needs its 255 replaced by the label's value" in problem.fix


def test_only_background_is_warned_only_without_any_foreground() -> None:
    problems, _ = label_value_problems(np.zeros(4, np.uint8), HERE, RULES)
    assert _messages(problems) == [
        "warning: label contains only background; this case teaches the network no foreground."
    ]
    problems, _ = label_value_problems(np.array([0, 1.2], np.float32), HERE, RULES)
    assert not any("only background" in m for m in _messages(problems))


def test_unknown_labels_skip_only_the_declared_values_check() -> None:
    rules = CaseRules(1, None)
    problems, _ = label_value_problems(np.array([0, 7], np.uint8), HERE, rules)
    assert problems == []


def test_non_finite_images() -> None:
    image = _ramp((1, 2, 2, 2))
    assert image_value_problems(image, HERE) == []
    image[0, 0, 0, 0] = np.inf
    assert "1 NaN or infinite" in image_value_problems(image, HERE)[0].message


def _file(shape, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), name="a.nii.gz") -> ReadFile:
    dim = len(origin)
    direction = IDENTITY if dim == 3 else (1.0, 0.0, 0.0, 1.0)
    return ReadFile(Path(name), shape, Geometry(spacing, origin, direction))


def test_spacing_within_float32_rounding_is_the_same_grid() -> None:
    ref = _file((4, 4, 4), (0.7, 0.7, 3.0))
    close = _file((4, 4, 4), (0.70000005, 0.7, 3.0), name="b.nii.gz")
    assert grid_problems(close, ref, "label") == []
    off = _file((4, 4, 4), (0.71, 0.7, 3.0), name="b.nii.gz")
    assert "label spacing" in grid_problems(off, ref, "label")[0].message


def test_dimensionality_mismatch_names_2d_and_3d() -> None:
    ref = _file((4, 4, 4))
    flat = _file((1, 4, 4), (999.0, 1.0, 1.0), (0.0, 0.0), name="b.nii.gz")
    assert grid_problems(flat, ref, "label")[0].message == "label is 2D but a.nii.gz is 3D."


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def test_dataset_dimensionality_is_the_majority_or_the_readers(tmp_path: Path) -> None:
    cases = [
        CaseFiles(f"c{i}", (_write(tmp_path / f"c{i}_0000.nii.gz", np.ones(shape)),), None)
        for i, shape in enumerate([(3, 4, 5), (3, 4, 5), (4, 5)])
    ]
    assert dataset_is_2d(SimpleITKIO(), cases) is False
    assert dataset_is_2d(SimpleITKIO(), cases[2:]) is True
    assert dataset_is_2d(NaturalImage2DIO(), cases) is True
    assert dataset_is_2d(Tiff3DIO(), cases) is False
    assert dataset_is_2d(SimpleITKIO(), []) is None


def test_load_case_stops_with_one_line_naming_the_file(tmp_path: Path) -> None:
    image = _write(tmp_path / "c_0000.nii.gz", _ramp((4, 5, 6)))
    label = _write(tmp_path / "c.nii.gz", np.full((4, 5, 6), 9, np.uint8))
    case = CaseFiles("c", (image,), label)
    with pytest.raises(AutoSegError) as error:
        load_case(SimpleITKIO(), case, RULES)
    text = str(error.value)
    assert text.startswith(f"{label}: label contains values 9")
    assert "Fix:" in text
    assert "\n" not in text
    _write(label, np.ones((4, 5, 6), np.uint8))
    loaded = load_case(SimpleITKIO(), case, RULES)
    assert loaded.images.shape == (1, 4, 5, 6)
    assert loaded.seg is not None
    assert loaded.warnings == []


def test_a_constant_image_is_a_warning() -> None:
    (problem,) = image_value_problems(np.zeros((1, 2, 2, 2), np.float32), HERE)
    assert problem.severity == "warning"
    assert "constant (every voxel is 0)" in problem.message
