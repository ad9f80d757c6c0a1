"""NaN/inf stored in NIfTI files: invisible to SimpleITK (read as 0), found in the raw voxels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from autoseg.nifti_values import ITK_REPLACEMENT, count_nonfinite, nonfinite_problems


def _write(path: Path, array: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def test_itk_really_reads_nan_in_nifti_as_the_replacement(tmp_path: Path) -> None:
    array = np.ones((3, 4, 5), np.float32)
    array[0, 0, 0], array[1, 1, 1] = np.nan, -np.inf
    path = _write(tmp_path / "a.nii.gz", array)
    read = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    assert read[0, 0, 0] == ITK_REPLACEMENT
    assert read[1, 1, 1] == ITK_REPLACEMENT
    assert count_nonfinite(path) == 2
    (problem,) = nonfinite_problems(path)
    assert problem.severity == "warning"
    assert problem.location == str(path)
    assert "2 voxel(s) are NaN or infinite" in problem.message
    assert f"read as {ITK_REPLACEMENT}" in problem.message


def test_finite_integer_and_other_files_give_nothing(tmp_path: Path) -> None:
    assert nonfinite_problems(_write(tmp_path / "a.nii", np.ones((3, 4, 5), np.float32))) == []
    assert nonfinite_problems(_write(tmp_path / "b.nii.gz", np.ones((3, 4, 5), np.int16))) == []
    nan = np.full((3, 4, 5), np.nan, np.float32)
    assert nonfinite_problems(_write(tmp_path / "c.mha", nan)) == []  # the reader sees those
    broken = tmp_path / "d.nii.gz"
    broken.write_bytes(b"not nifti")
    assert count_nonfinite(broken) == 0
