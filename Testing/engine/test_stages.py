"""The pipeline stages on dataset folders: a re-run after the raw data changed redoes what changed
(fingerprint recomputed, only the changed cases preprocessed) and says why in one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import SimpleITK as sitk

from autoseg.paths import DataRoots
from autoseg.planning import PlannerOptions
from autoseg.stages import (
    DatasetFolders,
    fingerprint_dataset,
    plan_dataset,
    preprocess_configurations,
)

NAME = "Dataset321_Fresh"
SHAPE = (10, 12, 12)


def _pipeline(folders: DatasetFolders) -> None:
    fingerprint_dataset(folders, 1)
    plans = plan_dataset(folders, PlannerOptions())
    preprocess_configurations(folders, plans.plans_name, ["3d_fullres"], 1)


def _setup(make_dataset, tmp_path: Path, num_cases: int = 3) -> DatasetFolders:
    make_dataset(NAME, num_cases=num_cases, shape=SHAPE)  # one MRI channel: z-score normalized
    roots = DataRoots(tmp_path, tmp_path / "preprocessed", tmp_path / "results")
    folders = DatasetFolders.resolve(NAME, roots)
    _pipeline(folders)
    return folders


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def _rewritten_cases(before: dict[str, int], after: dict[str, int]) -> set[str]:
    names = {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}
    return {n[:8] for n in names}  # "case_001.npy" -> "case_001"


def _scale_image(path: Path, factor: float) -> None:
    """Edit an image's intensities in place (geometry and non-zero region unchanged)."""
    old = path.stat().st_mtime_ns
    image = sitk.ReadImage(str(path))
    edited = sitk.GetImageFromArray(sitk.GetArrayFromImage(image) * factor)
    edited.CopyInformation(image)
    sitk.WriteImage(edited, str(path))
    os.utime(path, ns=(old + 10**9, old + 10**9))  # a later edit, also on coarse clocks


def _data_folder(folders: DatasetFolders) -> Path:
    return folders.preprocessed / "AutoSegPlans_3d_fullres"


def test_unchanged_dataset_recomputes_nothing(make_dataset, tmp_path: Path, capsys) -> None:
    folders = _setup(make_dataset, tmp_path)
    capsys.readouterr()
    fingerprint_time = folders.fingerprint_file.stat().st_mtime_ns
    before = _mtimes(_data_folder(folders))
    _pipeline(folders)
    assert folders.fingerprint_file.stat().st_mtime_ns == fingerprint_time
    assert _mtimes(_data_folder(folders)) == before
    assert capsys.readouterr().err == ""


def test_edited_image_recomputes_fingerprint_and_redoes_only_its_case(
    make_dataset, tmp_path: Path, capsys
) -> None:
    folders = _setup(make_dataset, tmp_path)
    capsys.readouterr()
    before = _mtimes(_data_folder(folders))
    _scale_image(folders.raw / "imagesTr" / "case_001_0000.nii.gz", 3.0)
    _pipeline(folders)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"{folders.fingerprint_file}: recomputing it, because the dataset changed since: "
        "1 case(s) changed (case_001)"
    )
    assert _rewritten_cases(before, _mtimes(_data_folder(folders))) == {"case_001"}
    saved = json.loads(folders.fingerprint_file.read_text())
    stats = saved["foreground_intensity_properties_per_channel"]["0"]
    assert stats["max"] > 200  # the edited intensities are in the fingerprint


def test_added_case_is_fingerprinted_and_the_only_one_preprocessed(
    make_dataset, tmp_path: Path, capsys
) -> None:
    folders = _setup(make_dataset, tmp_path)
    capsys.readouterr()
    before = _mtimes(_data_folder(folders))
    shutil.copy2(
        folders.raw / "imagesTr" / "case_000_0000.nii.gz",
        folders.raw / "imagesTr" / "case_003_0000.nii.gz",
    )
    shutil.copy2(
        folders.raw / "labelsTr" / "case_000.nii.gz", folders.raw / "labelsTr" / "case_003.nii.gz"
    )
    make_dataset.write_json(folders.raw, {**make_dataset.read_json(folders.raw), "numTraining": 4})
    _pipeline(folders)
    err = capsys.readouterr().err
    assert "recomputing it, because the dataset changed since: 1 case(s) added (case_003)" in err
    assert _rewritten_cases(before, _mtimes(_data_folder(folders))) == {"case_003"}


def test_fingerprint_without_a_record_of_its_cases_is_recomputed(
    make_dataset, tmp_path: Path, capsys
) -> None:
    folders = _setup(make_dataset, tmp_path)
    saved = json.loads(folders.fingerprint_file.read_text())
    del saved["provenance"]  # as the previous version wrote it
    folders.fingerprint_file.write_text(json.dumps(saved))
    capsys.readouterr()
    before = _mtimes(_data_folder(folders))
    _pipeline(folders)
    assert "has no record of the cases it was computed from" in capsys.readouterr().err
    assert "provenance" in json.loads(folders.fingerprint_file.read_text())
    assert _mtimes(_data_folder(folders)) == before  # same data, same plans: cases stay


def test_plans_from_an_outdated_fingerprint_are_used_with_a_note(
    make_dataset, tmp_path: Path, capsys
) -> None:
    folders = _setup(make_dataset, tmp_path)
    _scale_image(folders.raw / "imagesTr" / "case_002_0000.nii.gz", 2.0)
    capsys.readouterr()
    preprocess_configurations(folders, "AutoSegPlans", ["3d_fullres"], 1)
    err = capsys.readouterr().err
    plans_file = folders.plans_file("AutoSegPlans")
    assert f"{plans_file}: they were planned from a fingerprint that is out of date" in err
    assert f"Fix: run 'autoseg plan_and_preprocess -d {NAME}'" in err
    assert "redoing 1 case(s)" in err  # the changed case is still redone
    plan_dataset(folders, PlannerOptions())
    assert "planning from it although the dataset changed since" in capsys.readouterr().err
    fingerprint_dataset(folders, 1)  # recomputed, but the plans are still the old ones
    capsys.readouterr()
    preprocess_configurations(folders, "AutoSegPlans", ["3d_fullres"], 1)
    err = capsys.readouterr().err
    assert "they were planned from an earlier fingerprint than the current one" in err
    plan_dataset(folders, PlannerOptions())
    preprocess_configurations(folders, "AutoSegPlans", ["3d_fullres"], 1)
    assert capsys.readouterr().err == ""
