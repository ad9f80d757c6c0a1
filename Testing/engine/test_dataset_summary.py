"""verify's closing table: cases, channels, label presence, spacing/size ranges, problems by kind."""

from __future__ import annotations

import numpy as np

from autoseg.dataset_summary import summary_lines
from autoseg.integrity import inspect_dataset


def _ramp(shape) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def _table(lines: list[str]) -> dict[str, str]:
    rows = {}
    for line in lines[1:]:
        name, _, value = line.strip().partition("  ")
        rows[name] = value.strip()
    return rows


def test_summary_of_a_dataset_with_problems(make_dataset):
    folder = make_dataset(num_cases=3, channels=("T1", "T2"), shape=(8, 9, 10))
    make_dataset.write_image(folder / "imagesTr" / "case_001_0000.nii.gz", _ramp((8, 9, 12)))
    make_dataset.write_image(
        folder / "labelsTr" / "case_002.nii.gz", np.zeros((8, 9, 10), np.uint8)
    )
    make_dataset.write_image(
        folder / "imagesTr" / "case_000_0001.nii.gz",
        _ramp((8, 9, 10)),
        spacing=(1.0, 1.0, 1.00000001),
    )
    lines = summary_lines(inspect_dataset(folder, num_processes=1))
    assert lines[0] == "Summary:"
    table = _table(lines)
    assert table["cases"] == "3 found (3 declared), 3 readable"
    assert table["channels"] == "2: T1, T2"
    assert table["labels (cases)"] == "0 background 3/3, 1 a 2/3, 2 b 2/3"
    assert table["spacing"] == "1 x 1 x 1"
    assert table["size (voxels)"] == "8 x 9 x 10 .. 8 x 9 x 12"
    assert table["problems"] == "2 error(s): voxel grid 2; 1 warning(s): background only 1"


def test_summary_of_an_unreadable_dataset_json(tmp_path):
    (tmp_path / "dataset.json").write_text("{")
    table = _table(summary_lines(inspect_dataset(tmp_path, num_processes=1)))
    assert table["cases"].startswith("0 found (? declared)")
    assert table["problems"] == "1 error(s): dataset.json 1; 0 warnings"
