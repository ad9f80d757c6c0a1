"""dataset.json parsing and discovery of training cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.dataset import (
    CaseFiles,
    discover_cases,
    load_dataset_json,
    read_dataset_json,
    training_cases,
)
from autoseg.errors import ProblemsFound

MINIMAL = {
    "channel_names": {"0": "CT"},
    "labels": {"background": 0, "liver": 1},
    "numTraining": 2,
    "file_ending": ".nii.gz",
}


def _write(tmp_path: Path, data) -> Path:
    path = tmp_path / "dataset.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def _messages(tmp_path: Path, data) -> list[str]:
    with pytest.raises(ProblemsFound) as info:
        load_dataset_json(_write(tmp_path, data))
    return [p.message for p in info.value.problems if p.is_error]


def test_minimal_dataset_json(tmp_path):
    spec = load_dataset_json(_write(tmp_path, {**MINIMAL, "name": "x", "licence": "y"}))
    assert spec.channel_names == ("CT",)
    assert spec.num_channels == 1
    assert spec.labels.all_labels == (0, 1)
    assert spec.num_training == 2
    assert spec.file_ending == ".nii.gz"
    assert spec.reader_override is None
    assert spec.explicit_cases is None
    assert spec.raw["licence"] == "y"


def test_channels_are_ordered_by_integer_key(tmp_path):
    data = {**MINIMAL, "channel_names": {"10": "k", "2": "c", "0": "a", "1": "b"}}
    data["channel_names"].update({str(i): f"x{i}" for i in range(3, 10)})
    spec = load_dataset_json(_write(tmp_path, data))
    assert spec.channel_names[:3] == ("a", "b", "c")
    assert spec.channel_names[-1] == "k"


def test_old_modality_key_is_accepted(tmp_path):
    data = {k: v for k, v in MINIMAL.items() if k != "channel_names"}
    spec = load_dataset_json(_write(tmp_path, {**data, "modality": {"0": "MRI", "1": "T2"}}))
    assert spec.channel_names == ("MRI", "T2")


@pytest.mark.parametrize("value", [None, "None"])
def test_reader_override_none(tmp_path, value):
    spec = load_dataset_json(_write(tmp_path, {**MINIMAL, "overwrite_image_reader_writer": value}))
    assert spec.reader_override is None


def test_reader_override(tmp_path):
    data = {**MINIMAL, "overwrite_image_reader_writer": "SimpleITKIO"}
    assert load_dataset_json(_write(tmp_path, data)).reader_override == "SimpleITKIO"


@pytest.mark.parametrize("key", ["channel_names", "labels", "numTraining", "file_ending"])
def test_missing_key_is_named(tmp_path, key):
    data = {k: v for k, v in MINIMAL.items() if k != key}
    messages = _messages(tmp_path, data)
    assert len(messages) == 1
    assert f'"{key}"' in messages[0]
    assert "missing" in messages[0]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("channel_names", ["CT"]),
        ("channel_names", {"0": "CT", "2": "T2"}),
        ("channel_names", {"a": "CT"}),
        ("numTraining", "2"),
        ("numTraining", 0),
        ("numTraining", True),
        ("file_ending", "nii.gz"),
        ("file_ending", 3),
        ("overwrite_image_reader_writer", 5),
        ("dataset", []),
    ],
)
def test_wrong_type_is_named(tmp_path, key, value):
    messages = _messages(tmp_path, {**MINIMAL, key: value})
    assert len(messages) == 1
    assert f'"{key}"' in messages[0]
    assert "expected" in messages[0]


def test_every_problem_is_reported_at_once(tmp_path):
    data = {
        "channel_names": "CT",
        "labels": {"background": 0, "liver": 1.5, "ignore": 7},
        "numTraining": -3,
    }
    problems = _messages(tmp_path, data)
    joined = "\n".join(problems)
    for needle in ['"channel_names"', 'labels["liver"]', "ignore", '"numTraining"', "file_ending"]:
        assert needle in joined
    assert len(problems) >= 5


def test_each_problem_has_a_fix(tmp_path):
    with pytest.raises(ProblemsFound) as info:
        load_dataset_json(_write(tmp_path, {"labels": 3}))
    assert all(p.fix for p in info.value.problems)
    assert all(p.location.endswith("dataset.json") for p in info.value.problems)


def test_invalid_json_and_missing_file(tmp_path):
    assert "not valid JSON" in _messages(tmp_path, "{not json")[0]
    with pytest.raises(ProblemsFound, match="does not exist"):
        load_dataset_json(tmp_path / "missing" / "dataset.json")
    assert "JSON object" in _messages(tmp_path, "[1, 2]")[0]


def test_duplicate_keys_are_reported(tmp_path):
    text = json.dumps(MINIMAL)[:-1] + ', "numTraining": 3}'
    assert any("more than once" in m for m in _messages(tmp_path, text))


def test_explicit_cases_resolve_relative_paths(tmp_path):
    data = {
        **MINIMAL,
        "dataset": {
            "b": {"images": ["img/b_0000.nii.gz"], "label": "lab/b.nii.gz"},
            "a": {"images": ["/abs/a.nii.gz"], "label": "$DATA/a.nii.gz"},
        },
    }
    spec, problems = read_dataset_json(_write(tmp_path, data), env={"DATA": "/data"})
    assert not problems
    assert spec is not None
    assert spec.explicit_cases == (
        CaseFiles("a", (Path("/abs/a.nii.gz"),), Path("/data/a.nii.gz")),
        CaseFiles("b", (tmp_path / "img" / "b_0000.nii.gz",), tmp_path / "lab" / "b.nii.gz"),
    )


def test_one_rgb_file_per_case_supplies_the_channels(make_dataset):
    folder = make_dataset(channels=("R", "G", "B"))
    for case in ("case_000", "case_001"):
        for channel in (1, 2):
            (folder / "imagesTr" / f"{case}_{channel:04d}.nii.gz").unlink()
        rgb = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True)
        sitk.WriteImage(rgb, str(folder / "imagesTr" / f"{case}_0000.nii.gz"))
    cases, problems = _discover(folder)
    assert problems == []
    assert [len(c.images) for c in cases] == [1, 1]


def test_gap_in_channel_files_names_the_missing_one(make_dataset):
    folder = make_dataset(channels=("R", "G", "B"))
    (folder / "imagesTr" / "case_001_0001.nii.gz").unlink()
    cases, problems = _discover(folder)
    assert [c.case_id for c in cases] == ["case_000"]
    assert [p.message for p in problems] == [
        "case case_001: channel file(s) case_001_0001.nii.gz missing."
    ]


def test_explicit_case_with_bad_entry(tmp_path):
    messages = _messages(tmp_path, {**MINIMAL, "dataset": {"a": {"images": "a.nii.gz"}}})
    assert any('"dataset"["a"]["images"]' in m for m in messages)


# ----------------------------------------------------------------------------------- discovery
def _discover(folder: Path):
    spec = load_dataset_json(folder / "dataset.json")
    return discover_cases(folder, spec)


def test_discovers_sorted_cases(make_dataset):
    folder = make_dataset(num_cases=3, channels=("T1", "T2"))
    cases, problems = _discover(folder)
    assert problems == []
    assert [c.case_id for c in cases] == ["case_000", "case_001", "case_002"]
    assert [p.name for p in cases[1].images] == ["case_001_0000.nii.gz", "case_001_0001.nii.gz"]
    assert cases[1].label == folder / "labelsTr" / "case_001.nii.gz"


def test_missing_channel_file(make_dataset):
    folder = make_dataset(channels=("T1", "T2"))
    (folder / "imagesTr" / "case_001_0001.nii.gz").unlink()
    cases, problems = _discover(folder)
    assert [c.case_id for c in cases] == ["case_000"]
    assert len(problems) == 1
    assert "case_001_0001.nii.gz" in problems[0].message


def test_extra_channel_file(make_dataset):
    folder = make_dataset()
    (folder / "imagesTr" / "case_000_0001.nii.gz").write_bytes(b"")
    _, problems = _discover(folder)
    assert [p.is_error for p in problems] == [True]
    assert "beyond the 1 channel" in problems[0].message


def test_missing_label(make_dataset):
    folder = make_dataset()
    (folder / "labelsTr" / "case_000.nii.gz").unlink()
    cases, problems = _discover(folder)
    assert [c.case_id for c in cases] == ["case_001"]
    assert "label of case case_000 is missing" in problems[0].message
    assert problems[0].location.endswith("case_000.nii.gz")


def test_label_without_image(make_dataset):
    folder = make_dataset()
    (folder / "labelsTr" / "orphan.nii.gz").write_bytes(b"")
    _, problems = _discover(folder)
    assert [p.severity for p in problems] == ["warning"]
    assert "orphan.nii.gz" in problems[0].location


def test_wrong_ending_and_no_channel_suffix(make_dataset):
    folder = make_dataset()
    (folder / "imagesTr" / "case_002_0000.nii").write_bytes(b"")
    (folder / "labelsTr" / "notes.txt").write_text("x", encoding="utf-8")
    (folder / "imagesTr" / "case_003.nii.gz").write_bytes(b"")
    (folder / "imagesTr" / ".DS_Store").write_bytes(b"")
    _, problems = _discover(folder)
    by_name = {Path(p.location).name: p for p in problems}
    assert by_name["case_002_0000.nii"].severity == "warning"
    assert by_name["notes.txt"].severity == "warning"
    assert "channel suffix" in by_name["case_003.nii.gz"].message
    assert ".DS_Store" not in by_name


def test_count_differs_from_num_training(make_dataset):
    folder = make_dataset(num_cases=2, extra_json={"numTraining": 5})
    _, problems = _discover(folder)
    assert len(problems) == 1
    assert '"numTraining" is 5 but 2' in problems[0].message
    assert 'Set "numTraining": 2' in problems[0].fix


def test_files_with_another_ending_explain_the_count_instead_of_a_new_num_training(make_dataset):
    folder = make_dataset(num_cases=2)
    for path in (folder / "imagesTr").iterdir():
        path.rename(path.with_name(path.name.removesuffix(".gz")))
    _, problems = _discover(folder)
    (error,) = [p for p in problems if p.is_error]
    assert Path(error.location).name == "case_000_0000.nii"
    assert "2 file(s) in imagesTr/ are ignored" in error.message
    assert "numTraining" not in error.fix
    assert '"file_ending"' in error.fix


def test_missing_folders(make_dataset):
    folder = make_dataset()
    for sub in ("imagesTr", "labelsTr"):
        for file in (folder / sub).iterdir():
            file.unlink()
        (folder / sub).rmdir()
    _, problems = _discover(folder)
    messages = [(Path(p.location).name, p.message) for p in problems]
    assert ("imagesTr", "folder does not exist.") in messages
    assert ("labelsTr", "folder does not exist.") in messages
    assert len(messages) == 2


def test_training_cases_raises_on_errors(make_dataset):
    folder = make_dataset()
    spec = load_dataset_json(folder / "dataset.json")
    assert len(training_cases(folder, spec)) == 2
    (folder / "labelsTr" / "case_000.nii.gz").unlink()
    with pytest.raises(ProblemsFound, match="label of case case_000"):
        training_cases(folder, spec)


def test_explicit_cases_discovery(make_dataset, tmp_path):
    folder = make_dataset()
    (folder / "imagesTr").rename(tmp_path / "elsewhere")
    data = make_dataset.read_json(folder)
    data["dataset"] = {
        "x": {
            "images": [str(tmp_path / "elsewhere" / "case_000_0000.nii.gz")],
            "label": "labelsTr/case_000.nii.gz",
        },
        "y": {"images": ["missing_0000.nii.gz"], "label": "labelsTr/case_001.nii.gz"},
        "z": {"images": [str(tmp_path / "elsewhere" / "case_000_0000.nii.gz")]},
    }
    make_dataset.write_json(folder, data)
    cases, problems = _discover(folder)
    assert [c.case_id for c in cases] == ["x"]
    joined = "\n".join(str(p) for p in problems)
    assert "missing_0000.nii.gz: file of case y does not exist" in joined
    assert '"dataset"["z"] has no "label"' in joined
    assert "listed for case z and case x" in joined
    assert '"numTraining" is 2 but 3' in joined


def test_explicit_wrong_ending_and_channel_count(make_dataset):
    folder = make_dataset()
    data = make_dataset.read_json(folder)
    image = "imagesTr/case_000_0000.nii.gz"
    data["dataset"] = {
        "x": {
            "images": [image, "imagesTr/case_001_0000.nii.gz"],
            "label": "labelsTr/case_000.nii.gz",
        },
        "y": {"images": ["dataset.json"], "label": "labelsTr/case_001.nii.gz"},
    }
    make_dataset.write_json(folder, data)
    _, problems = _discover(folder)
    joined = "\n".join(p.message for p in problems)
    assert "case x lists 2 image(s); channel_names has 1." in joined
    assert 'does not end with ".nii.gz"' in joined
    assert np.all([p.is_error for p in problems])
