"""Creating, opening, listing and extending dataset folders; dataset.json stays the user's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoseg.dataset import read_dataset_json
from AutoSegCoreLib.dataset_folder import (
    WRITABLE_FILE_ENDINGS,
    DatasetFolderError,
    DatasetInfo,
    add_labels,
    create_dataset,
    list_datasets,
    next_case_id,
    open_dataset,
    update_num_training,
)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def _write_dataset(folder: Path, data: dict) -> Path:
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    (folder / "dataset.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


def test_create_writes_the_layout_and_an_empty_dataset_json(tmp_path: Path):
    info = create_dataset(tmp_path / "raw", 7, "Liver-CT_2", ["CT ", "PET"])
    folder = tmp_path / "raw" / "Dataset007_Liver-CT_2"
    assert (folder / "imagesTr").is_dir()
    assert (folder / "labelsTr").is_dir()
    assert json.loads((folder / "dataset.json").read_text(encoding="utf-8")) == {
        "channel_names": {"0": "CT", "1": "PET"},
        "labels": {"background": 0},
        "numTraining": 0,
        "file_ending": ".nii.gz",
    }
    assert info == DatasetInfo(
        folder, 7, "Liver-CT_2", ("CT", "PET"), {"background": 0}, ".nii.gz", ()
    )
    assert open_dataset(folder) == info


@pytest.mark.parametrize(
    ("dataset_id", "name", "channels", "ending", "expected"),
    [
        (0, "A", ["CT"], ".nii.gz", "dataset id 0 is out of range"),
        (1000, "A", ["CT"], ".nii.gz", "dataset id 1000 is out of range"),
        (True, "A", ["CT"], ".nii.gz", "is not an integer"),
        (5, "my data", ["CT"], ".nii.gz", "'my data' is not usable as a folder name"),
        (5, "a/b", ["CT"], ".nii.gz", "'a/b' is not usable"),
        (5, "Leber\u00e4", ["CT"], ".nii.gz", "is not usable"),
        (5, "", ["CT"], ".nii.gz", "'' is not usable"),
        (5, "A", [], ".nii.gz", "no channel names"),
        (5, "A", ["CT", " "], ".nii.gz", "position [1] are empty"),
        (5, "A", ["CT"], ".png", "file ending '.png' is not supported"),
        (5, "A", ["CT"], ".nhdr", "file ending '.nhdr' is not supported"),
    ],
)
def test_create_refuses_bad_input_and_creates_nothing(
    tmp_path: Path, dataset_id, name, channels, ending, expected
):
    with pytest.raises(DatasetFolderError) as caught:
        create_dataset(tmp_path, dataset_id, name, channels, file_ending=ending)
    assert expected in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_create_refuses_an_id_used_by_any_dataset_folder(tmp_path: Path):
    (tmp_path / "Dataset003_Broken").mkdir()  # no dataset.json: the id is still taken
    create_dataset(tmp_path, 1, "One", ["CT"])
    with pytest.raises(
        DatasetFolderError, match=r"already used by Dataset003_Broken; use e\.g\. 2"
    ):
        create_dataset(tmp_path, 3, "Other", ["CT"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset001_One", "Dataset003_Broken"]


def test_create_accepts_every_writable_ending(tmp_path: Path):
    assert set(WRITABLE_FILE_ENDINGS) == {".nii.gz", ".nii", ".nrrd", ".mha"}
    for i, ending in enumerate(WRITABLE_FILE_ENDINGS, start=1):
        assert (
            create_dataset(tmp_path, i, f"E{i}", ["MR"], file_ending=ending).file_ending == ending
        )


def test_open_reports_the_engines_own_problem_messages(tmp_path: Path):
    folder = _write_dataset(
        tmp_path / "Dataset002_Bad", {"channel_names": {"0": "CT"}, "labels": {"a": 1}}
    )
    _, problems = read_dataset_json(folder / "dataset.json")
    with pytest.raises(DatasetFolderError) as caught:
        open_dataset(folder)
    for problem in problems:
        assert str(problem) in str(caught.value)
    assert "no background entry" in str(caught.value)


def test_open_refuses_missing_and_misnamed_folders(tmp_path: Path):
    with pytest.raises(DatasetFolderError, match="does not exist"):
        open_dataset(tmp_path / "Dataset001_Missing")
    (tmp_path / "MyData").mkdir()
    with pytest.raises(DatasetFolderError, match="must be DatasetXXX_Name"):
        open_dataset(tmp_path / "MyData")
    (tmp_path / "Dataset004_Empty").mkdir()
    with pytest.raises(DatasetFolderError, match=r"dataset.json does not exist"):
        open_dataset(tmp_path / "Dataset004_Empty")


def test_open_lists_case_ids_from_images_sorted(tmp_path: Path):
    info = create_dataset(tmp_path, 4, "Hip", ["MR"])
    for name in ("b_0000.nii.gz", "a_0000.nii.gz", "a_0001.nii.gz", ".x_0000.nii.gz", "c.nii.gz"):
        _touch(info.folder / "imagesTr" / name)
    assert open_dataset(info.folder).case_ids == ("a", "b")


def test_list_datasets_sorts_by_id_and_skips_broken_ones(tmp_path: Path):
    create_dataset(tmp_path, 12, "Late", ["CT"])
    create_dataset(tmp_path, 2, "Early", ["CT"])
    (tmp_path / "Dataset005_Broken").mkdir()
    (tmp_path / "notes").mkdir()
    assert [(i.dataset_id, i.name) for i in list_datasets(tmp_path)] == [(2, "Early"), (12, "Late")]
    assert list_datasets(tmp_path / "missing") == []


def test_next_case_id_takes_the_first_number_used_by_no_file(tmp_path: Path):
    info = create_dataset(tmp_path, 4, "Hip", ["MR"])
    assert next_case_id(info) == "Hip_001"
    _touch(info.folder / "imagesTr" / "Hip_001_0000.nii.gz")
    _touch(info.folder / "labelsTr" / "Hip_002.nii.gz")  # a label without images still blocks
    _touch(info.folder / "imagesTr" / "Hip_004_0000.nii.gz")
    assert next_case_id(info) == "Hip_003"


def test_add_labels_appends_after_the_largest_and_keeps_other_keys(tmp_path: Path):
    data = {
        "description": "mine",
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": 1, "spleen": 3, "kidney": 2},
        "numTraining": 4,
        "file_ending": ".nii.gz",
        "licence": {"nested": [1, 2]},
    }
    info = open_dataset(_write_dataset(tmp_path / "Dataset009_Abd", data))
    updated = add_labels(info, ["Tumor", " LIVER", "cyst", "tumor "])
    written = json.loads((info.folder / "dataset.json").read_text(encoding="utf-8"))
    assert list(written) == list(data)
    assert written == {**data, "labels": {**data["labels"], "Tumor": 4, "cyst": 5}}
    assert updated.labels == written["labels"]
    assert add_labels(updated, ["liver"]) == updated  # nothing new: file untouched


@pytest.mark.parametrize(
    ("labels", "extra", "expected"),
    [
        (
            {"background": 0, "a": 1, "b": 2, "ab": [1, 2]},
            {"regions_class_order": [1, 2, 3]},
            "region",
        ),
        ({"background": 0, "a": 1, "ignore": 2}, {}, '"ignore" label'),
    ],
)
def test_add_labels_refuses_region_and_ignore_datasets(tmp_path: Path, labels, extra, expected):
    data = {
        "channel_names": {"0": "CT"},
        "labels": labels,
        "numTraining": 0,
        "file_ending": ".nrrd",
    }
    folder = _write_dataset(tmp_path / "Dataset001_R", {**data, **extra})
    before = (folder / "dataset.json").read_bytes()
    with pytest.raises(DatasetFolderError, match=expected):
        add_labels(open_dataset(folder), ["new"])
    assert (folder / "dataset.json").read_bytes() == before


def test_add_labels_refuses_reserved_names(tmp_path: Path):
    info = create_dataset(tmp_path, 1, "A", ["CT"])
    with pytest.raises(DatasetFolderError, match="'Background' cannot be added"):
        add_labels(info, ["ok", "Background", " "])
    assert open_dataset(info.folder).labels == {"background": 0}


def test_update_num_training_counts_the_cases_in_images(tmp_path: Path):
    info = create_dataset(tmp_path, 1, "A", ["CT"])
    for name in ("A_001_0000.nii.gz", "A_002_0000.nii.gz"):
        _touch(info.folder / "imagesTr" / name)
    update_num_training(info)
    written = json.loads((info.folder / "dataset.json").read_text(encoding="utf-8"))
    assert written["numTraining"] == 2
