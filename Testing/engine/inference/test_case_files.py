"""Input folders for prediction: grouping CASE_XXXX files and reporting every naming problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.errors import AutoSegError
from autoseg.inference.case_files import find_input_cases


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")  # grouping looks at names only


def _image(folder: Path, name: str, components: int) -> Path:
    """A real 16x20 image (the scan reads headers when a case has fewer files than channels)."""
    folder.mkdir(parents=True, exist_ok=True)
    shape = (16, 20, components) if components > 1 else (16, 20)
    array = np.zeros(shape, dtype=np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=components > 1), str(folder / name))
    return folder / name


def _problems(folder: Path, channels: int = 2, ending: str = ".nii.gz") -> list[str]:
    with pytest.raises(AutoSegError) as caught:
        find_input_cases(folder, channels, ending)
    return str(caught.value).splitlines()


def test_cases_are_grouped_in_channel_order(tmp_path: Path) -> None:
    _touch(tmp_path, "b_0001.nii.gz", "a_0000.nii.gz", "b_0000.nii.gz", "a_0001.nii.gz")
    _touch(tmp_path, "x_7_0000.nii.gz", "x_7_0001.nii.gz", ".DS_Store")
    (tmp_path / ".lowres").mkdir()  # sub-folders are not inputs
    cases = find_input_cases(tmp_path, 2, ".nii.gz")
    assert [case_id for case_id, _ in cases] == ["a", "b", "x_7"]
    assert [f.name for f in cases[1][1]] == ["b_0000.nii.gz", "b_0001.nii.gz"]


def test_case_ids_may_end_in_digits(tmp_path: Path) -> None:
    _touch(tmp_path, "hippo_0012_0000.nii.gz")
    assert find_input_cases(tmp_path, 1, ".nii.gz") == [
        ("hippo_0012", [tmp_path / "hippo_0012_0000.nii.gz"])
    ]


def test_tiff_sidecars_are_not_problems(tmp_path: Path) -> None:
    _touch(tmp_path, "c_0000.tif", "c.json")
    assert [c for c, _ in find_input_cases(tmp_path, 1, ".tif")] == ["c"]
    assert len(_problems(tmp_path, 1, ".nii.gz")) == 3  # header + the two foreign files


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["a_0001.nii.gz"], "a_0000.nii.gz: missing; case a needs the model's 2 channel(s)"),
        (
            ["a_0000.nii.gz", "a_0001.nii.gz", "a_0002.nii.gz"],
            "a_0002.nii.gz: channel 0002 is beyond the model's 2 channel(s)",
        ),
        (
            ["a_0000.nii.gz", "a_0001.nii.gz", "b_0000.nii"],
            "b_0000.nii: does not end with the model's file ending",
        ),
        (["a.nii.gz"], "a.nii.gz: the name lacks the 4-digit channel suffix"),
        (["a_000.nii.gz"], "a_000.nii.gz: the name lacks the 4-digit channel suffix"),
    ],
)
def test_one_problem_is_one_line_with_file_and_fix(
    tmp_path: Path, names: list[str], expected: str
) -> None:
    _touch(tmp_path, *names)
    lines = _problems(tmp_path)
    assert len(lines) == 1
    assert expected in lines[0]
    assert str(tmp_path) in lines[0]
    assert "Fix:" in lines[0]


def test_every_problem_of_the_folder_is_reported_at_once(tmp_path: Path) -> None:
    _touch(
        tmp_path,
        "ok_0000.nii.gz",
        "ok_0001.nii.gz",
        "half_0001.nii.gz",
        "many_0000.nii.gz",
        "many_0001.nii.gz",
        "many_0003.nii.gz",
        "notes.txt",
        "plain.nii.gz",
    )
    lines = _problems(tmp_path)
    assert lines[0] == f"{tmp_path}: 4 problem(s) with the input files:"
    body = lines[1:]
    assert len(body) == 4
    assert all("Fix:" in line for line in body)
    for name in ("half_0000.nii.gz", "many_0003.nii.gz", "notes.txt", "plain.nii.gz"):
        assert sum(name in line for line in body) == 1, name


def test_missing_or_empty_folder_is_one_line(tmp_path: Path) -> None:
    assert "input folder not found" in _problems(tmp_path / "nope")[0]
    lines = _problems(tmp_path)
    assert len(lines) == 1
    assert "no images to predict" in lines[0]


def test_one_rgb_file_supplies_three_channels(tmp_path: Path) -> None:
    rgb = _image(tmp_path, "photo_0000.png", 3)
    assert find_input_cases(tmp_path, 3, ".png") == [("photo", [rgb])]


def test_grey_files_one_per_channel_still_work(tmp_path: Path) -> None:
    files = [_image(tmp_path, f"photo_{c:04d}.png", 1) for c in range(3)]
    assert find_input_cases(tmp_path, 3, ".png") == [("photo", files)]


@pytest.mark.parametrize(
    ("components", "channels", "missing"),
    [(1, 2, ["a_0001.png"]), (1, 3, ["a_0001.png", "a_0002.png"]), (3, 4, ["a_0001.png"])],
)
def test_files_supplying_too_few_channels_name_the_missing_files(
    tmp_path: Path, components: int, channels: int, missing: list[str]
) -> None:
    _image(tmp_path, "a_0000.png", components)
    lines = _problems(tmp_path, channels, ".png")
    body = lines[1:] if len(lines) > 1 else lines
    assert [line.split(": missing")[0] for line in body] == [str(tmp_path / m) for m in missing]
    assert all("Fix:" in line and "RGB" in line for line in body)


def test_unreadable_header_is_left_to_the_reader(tmp_path: Path) -> None:
    _touch(tmp_path, "a_0000.png")  # the reader names this file when it is read
    assert find_input_cases(tmp_path, 3, ".png") == [("a", [tmp_path / "a_0000.png"])]
