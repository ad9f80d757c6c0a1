"""Channel counts per file and the 8-bit rule of "rgb_to_0_1" channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoseg.channel_checks import channel_problems, rgb_range_problems

DATASET = "this dataset"


def test_matching_counts_pass_in_both_spellings() -> None:
    assert channel_problems("c", [(Path("c_0000.png"), 3)], 3, DATASET) == []
    grey = [(Path(f"c_{i:04d}.png"), 1) for i in range(3)]
    assert channel_problems("c", grey, 3, DATASET) == []


def test_too_few_channels_name_the_missing_grey_files() -> None:
    (problem,) = channel_problems("c", [(Path("/d/c_0000.nii.gz"), 1)], 3, DATASET)
    assert problem.location == "/d/c_0000.nii.gz"
    assert "case c has 1 channel(s); the channel_names of this dataset list 3" in problem.message
    assert problem.fix.startswith("Add c_0001.nii.gz, c_0002.nii.gz (one grey file per channel)")


def test_too_few_channels_with_files_named_freely() -> None:
    (problem,) = channel_problems("c", [(Path("/d/photo.png"), 1)], 2, DATASET)
    assert problem.fix.startswith("Add 1 more grey file(s)")


def test_rgba_where_rgb_is_named_points_at_the_alpha_plane() -> None:
    (problem,) = channel_problems("c", [(Path("/d/c_0000.png"), 4)], 3, DATASET)
    assert problem.location == "/d/c_0000.png"
    assert "(channels per file: c_0000.png 4)" in problem.message
    assert "c_0000.png holds 4 channels" in problem.fix
    assert "save the image with 3 (without alpha, or grey)" in problem.fix


def test_rgb_file_and_one_name_asks_for_the_component_names() -> None:
    files = [(Path("/d/c_0000.png"), 3)]
    (problem,) = channel_problems("c", files, 1, "this model")
    assert "the channel_names of this model list 1" in problem.message
    assert "name each in the training dataset's channel_names (e.g. R, G, B)" in problem.fix


def test_extra_grey_files_are_named() -> None:
    files = [(Path(f"/d/c_{i:04d}.png"), 1) for i in range(3)]
    (problem,) = channel_problems("c", files, 2, DATASET)
    assert problem.location == "/d/c_0000.png"
    assert "remove the extra files" in problem.fix


def test_rgb_range_names_the_file_of_the_offending_channel() -> None:
    images = np.zeros((4, 1, 3, 3), dtype=np.float32)
    images[3] = 1000.0  # channel 3 lives in the second file
    files = [(Path("/d/c_0000.png"), 3), (Path("/d/c_0001.png"), 1)]
    (problem,) = rgb_range_problems(images, files, rgb_channels=(0, 3))
    assert problem.location == "/d/c_0001.png"
    assert 'channel 3 is named "rgb_to_0_1"' in problem.message
    assert "0..1000" in problem.message
    assert rgb_range_problems(images, files, rgb_channels=(0, 1, 2)) == []
    assert rgb_range_problems(images - 1.0, files, rgb_channels=(0,))[0].location.endswith(
        "0000.png"
    )
