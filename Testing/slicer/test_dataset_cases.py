"""dataset_cases: the case list's rows, and load -> edit -> save back, and remove, on real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from autoseg.dataset import load_dataset_json, training_cases
from autoseg.provenance import case_sources
from AutoSegCoreLib.case_export import NewLabelsNeedConfirmation, export_case
from AutoSegCoreLib.dataset_folder import (
    REMOVED_DIR,
    DatasetFolderError,
    DatasetInfo,
    create_dataset,
)
from AutoSegCoreLib.synthetic_cases import load_demo_case
from AutoSegCoreLib.volume_io import VolumeError
from AutoSegTrainLib.dataset_cases import (
    CaseSummary,
    load_dataset_case,
    remove_case,
    save_case_edits,
    summarize_case,
    summarize_cases,
)

ROOT = Path(__file__).resolve().parents[2]


def dataset_with_cases(folder: Path, count: int = 3, channel: str = "CT") -> DatasetInfo:
    """``count`` synthetic demo cases added through the Train logic (anisotropic, labels 1, 2)."""
    info = create_dataset(folder / "raw", 7, "Cases", [channel])
    for index in range(count):
        case = load_demo_case(folder / "cache", index)
        info = export_case(info, case.volumes, case.segmentation, allow_new_labels=True).dataset
    return info


def label_of(info: DatasetInfo, case_id: str) -> np.ndarray:
    return sitk.GetArrayFromImage(
        sitk.ReadImage(str(info.folder / "labelsTr" / f"{case_id}.nii.gz"))
    )


def sources(info: DatasetInfo) -> dict[str, dict]:
    cases = training_cases(info.folder, load_dataset_json(info.folder / "dataset.json"))
    return {case.case_id: case_sources(case) for case in cases}


def erase_lesion_add_organ_voxel(case) -> tuple[int, int, int]:
    """Edit the loaded segmentation as a user would: lesion erased, one organ voxel added."""
    volume, segmentation = case.volumes[0], case.segmentation
    segments = segmentation.GetSegmentation()
    organ_id = segments.GetSegmentIdBySegmentName("organ")
    lesion_id = segments.GetSegmentIdBySegmentName("lesion")
    organ = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, organ_id, volume)
    corner = (0, 0, 0)
    organ[corner] = 1
    slicer.util.updateSegmentBinaryLabelmapFromArray(organ, segmentation, organ_id, volume)
    empty = np.zeros_like(organ)
    slicer.util.updateSegmentBinaryLabelmapFromArray(empty, segmentation, lesion_id, volume)
    return corner


def test_rows_show_channels_size_spacing_and_labels_present(scene, tmp_path: Path) -> None:
    info = dataset_with_cases(tmp_path, 2)
    first, second = summarize_cases(info)
    assert first.case_id == "Cases_001"
    header = sitk.ReadImage(str(info.folder / "imagesTr" / "Cases_001_0000.nii.gz"))
    assert first.size == header.GetSize()
    np.testing.assert_allclose(first.spacing, header.GetSpacing(), atol=1e-6)
    assert set(first.labels_present) <= {"organ", "lesion"}
    assert "organ" in first.labels_present
    assert first.row()[:2] == ("Cases_001", "1")
    assert first.row()[2] == " x ".join(str(n) for n in header.GetSize())
    assert second.problem == ""


def test_a_case_with_missing_or_broken_files_says_so_in_its_row(scene, tmp_path: Path) -> None:
    info = dataset_with_cases(tmp_path, 2)
    (info.folder / "labelsTr" / "Cases_001.nii.gz").unlink()
    (info.folder / "labelsTr" / "Cases_002.nii.gz").write_bytes(b"not an image")
    missing, broken = summarize_cases(info)
    assert missing.problem == "missing Cases_001.nii.gz"
    assert missing.row()[4] == "missing Cases_001.nii.gz"
    assert broken.problem.startswith("unreadable")
    with pytest.raises(DatasetFolderError, match='Case "nope" is not in'):
        summarize_case(info, "nope")


def test_an_edited_case_is_saved_back_and_only_it_counts_as_changed(scene, tmp_path: Path) -> None:
    info = dataset_with_cases(tmp_path)
    before, untouched = sources(info), label_of(info, "Cases_001")
    previous = label_of(info, "Cases_002")
    case = load_dataset_case(info, "Cases_002")
    assert case.volumes[0].GetName() == "Cases_002"
    corner = erase_lesion_add_organ_voxel(case)
    saved = save_case_edits(info, "Cases_002", case)
    assert saved.label_file == info.folder / "labelsTr" / "Cases_002.nii.gz"
    expected = np.where(previous == 2, 0, previous)
    expected[corner] = 1
    np.testing.assert_array_equal(label_of(info, "Cases_002"), expected)
    kept = info.folder / REMOVED_DIR / "labelsTr" / "Cases_002.nii.gz"
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(kept))), previous)
    after = sources(info)
    assert [c for c in after if after[c] != before[c]] == ["Cases_002"]
    np.testing.assert_array_equal(label_of(info, "Cases_001"), untouched)
    assert summarize_case(info, "Cases_002").labels_present == ("organ",)  # not the cached row
    assert json.loads((info.folder / "dataset.json").read_text())["numTraining"] == 3


def test_saving_onto_another_cases_grid_or_with_new_names_is_refused(scene, tmp_path) -> None:
    info = dataset_with_cases(tmp_path, 2)
    first = load_dataset_case(info, "Cases_001")
    second = load_dataset_case(info, "Cases_002")
    before = label_of(info, "Cases_002")
    with pytest.raises(VolumeError, match="does not lie on the voxel grid of volume 'Cases_001'"):
        save_case_edits(info, "Cases_002", first)
    segments = second.segmentation.GetSegmentation()
    segments.GetSegment(segments.GetSegmentIdBySegmentName("lesion")).SetName("cyst")
    with pytest.raises(NewLabelsNeedConfirmation, match="cyst"):
        save_case_edits(info, "Cases_002", second)
    np.testing.assert_array_equal(label_of(info, "Cases_002"), before)
    assert not (info.folder / REMOVED_DIR).exists()


def test_a_removed_case_is_moved_aside_and_counted_out(scene, tmp_path: Path) -> None:
    info = dataset_with_cases(tmp_path, 3)
    image = (info.folder / "imagesTr" / "Cases_002_0000.nii.gz").read_bytes()
    info = remove_case(info, "Cases_002")
    assert info.case_ids == ("Cases_001", "Cases_003")
    assert json.loads((info.folder / "dataset.json").read_text())["numTraining"] == 2
    removed = info.folder / REMOVED_DIR
    assert (removed / "imagesTr" / "Cases_002_0000.nii.gz").read_bytes() == image
    assert (removed / "labelsTr" / "Cases_002.nii.gz").is_file()
    assert set(sources(info)) == {"Cases_001", "Cases_003"}
    # The freed id is used again by the next case; the removed files stay, under other names.
    case = load_demo_case(tmp_path / "cache", 4)
    info = export_case(info, case.volumes, case.segmentation).dataset
    info = remove_case(info, "Cases_002")
    assert sorted(p.name for p in (removed / "labelsTr").iterdir()) == [
        "Cases_002.1.nii.gz",
        "Cases_002.nii.gz",
    ]


def test_a_case_row_is_plain_text() -> None:
    row = CaseSummary("c", 2, (3, 4, 5), (0.5, 0.5, 2.0), ("organ", "lesion")).row()
    assert row == ("c", "2", "3 x 4 x 5", "0.5 x 0.5 x 2", "organ, lesion")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("channel", "redone"),
    [("MR", "1 case(s)"), ("CT", "3 case(s)")],
)
def test_the_engine_redoes_the_saved_case(scene, tmp_path: Path, channel, redone) -> None:
    """What the Train button runs after a save: planning sees the change, preprocessing redoes it.

    MR (z-score per image): only the saved case. CT: every case, because CT normalization uses
    the dataset's foreground intensity statistics, which the edited label changed. A removed
    case's preprocessed copy is deleted.
    """
    info = dataset_with_cases(tmp_path, channel=channel)
    folders = ["--raw", str(info.folder.parent), "--preprocessed", str(tmp_path / "pre")]
    command = [sys.executable, "-m", "autoseg", "plan_and_preprocess", "-d", info.folder.name]
    command += ["-c", "3d_fullres", "-np", "1", *folders, "--results", str(tmp_path / "res")]
    run = {"cwd": ROOT, "capture_output": True, "text": True}
    subprocess.run(command, check=True, **run)
    case = load_dataset_case(info, "Cases_003")
    erase_lesion_add_organ_voxel(case)
    save_case_edits(info, "Cases_003", case)
    output = subprocess.run(command, check=True, **run)
    text = output.stdout + output.stderr
    line = f"redoing {redone} whose raw files or preprocessing settings changed"
    (found,) = [row for row in text.splitlines() if line in row]
    assert "Cases_003" in found
    remove_case(info, "Cases_001")
    output = subprocess.run(command, check=True, **run)
    assert "removed 1 case(s) whose raw files are no longer in the dataset: Cases_001" in (
        output.stdout + output.stderr
    )
