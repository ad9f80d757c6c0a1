"""The command line: exit codes, one-line errors, and the planning commands end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoseg.cli import main

NO_ENV: dict[str, str] = {}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def roots(tmp_path: Path) -> list[str]:
    return ["--raw", str(tmp_path), "--preprocessed", str(tmp_path / "pre"), "--progress", "none"]


def test_verify_clean_dataset_exits_zero(make_dataset, tmp_path, capsys):
    make_dataset("Dataset007_Good")
    code, out, _ = run(capsys, "verify", "-d", "7", "-np", "1", *roots(tmp_path))
    assert code == 0
    assert "0 error(s)" in out


def test_verify_lists_every_problem_one_line_each(make_dataset, tmp_path, capsys):
    folder = make_dataset("Dataset008_Broken", num_cases=3)
    (folder / "labelsTr" / "case_000.nii.gz").unlink()
    (folder / "imagesTr" / "case_001_0000.nii.gz").rename(folder / "imagesTr" / "case_001_0000.nii")
    code, out, err = run(capsys, "verify", "-d", "Dataset008_Broken", "-np", "1", *roots(tmp_path))
    assert code == 1
    problem_lines = [line for line in out.splitlines() if line.startswith(("ERROR", "WARNING"))]
    assert any("case_000" in line for line in problem_lines)
    assert any("case_001" in line for line in problem_lines)
    assert all("Fix:" in line for line in problem_lines if line.startswith("ERROR"))
    assert "Traceback" not in out + err


def test_unknown_dataset_is_one_clear_line(tmp_path, capsys):
    code, _, err = run(capsys, "verify", "-d", "42", *roots(tmp_path))
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "42" in err


def test_missing_data_root_names_flag_and_variable(capsys, monkeypatch):
    for name in ("AUTOSEG_RAW", "nnUNet_raw", "AUTOSEG_PREPROCESSED", "nnUNet_preprocessed"):
        monkeypatch.delenv(name, raising=False)
    code, _, err = run(capsys, "plan_and_preprocess", "-d", "4")
    assert code == 2
    assert "--raw" in err
    assert "AUTOSEG_RAW" in err


def test_nnunet_environment_variables_are_honoured(make_dataset, tmp_path, capsys, monkeypatch):
    make_dataset("Dataset011_Env")
    monkeypatch.delenv("AUTOSEG_RAW", raising=False)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    code, out, _ = run(capsys, "verify", "-d", "011", "-np", "1", "--progress", "none")
    assert code == 0, out


def test_plan_and_preprocess_then_rerun_skips_work(make_dataset, tmp_path, capsys):
    root = tmp_path / "données_ü"  # non-ASCII paths must work end to end
    type(make_dataset)(root)("Dataset012_Small", num_cases=3, shape=(12, 16, 16))
    argv = [
        "plan_and_preprocess",
        "-d",
        "12",
        "-c",
        "2d",
        "3d_fullres",
        "-np",
        "1",
        *roots(root),
    ]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert "3d_fullres" in out
    pre = root / "pre" / "Dataset012_Small"
    plans = json.loads((pre / "AutoSegPlans.json").read_text())
    assert set(plans["configurations"]) == {"2d", "3d_fullres"}
    assert (pre / "dataset_fingerprint.json").is_file()
    assert (pre / "dataset.json").is_file()
    data_files = sorted((pre / "AutoSegPlans_3d_fullres").glob("*.npy"))
    assert data_files
    stamps = [p.stat().st_mtime_ns for p in data_files]
    code, _, _ = run(capsys, *argv)
    assert code == 0
    assert [p.stat().st_mtime_ns for p in data_files] == stamps


def test_python_dash_m_entry_point_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "autoseg", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "plan_and_preprocess" in result.stdout


def test_hippocampus_plans_match_the_method(shared_hippocampus, tmp_path, capsys):
    raw_root = shared_hippocampus.parent
    argv = ["plan_and_preprocess", "-d", "4", "-c", "2d", "3d_fullres", "-np", "2"]
    code, _, err = run(
        capsys, *argv, "--raw", str(raw_root), "--preprocessed", str(tmp_path), "--progress", "none"
    )
    assert code == 0, err
    plans = json.loads((tmp_path / "Dataset004_Hippocampus" / "AutoSegPlans.json").read_text())
    fullres = plans["configurations"]["3d_fullres"]
    assert fullres["patch_size"] == [40, 56, 40]
    assert fullres["batch_size"] == 4
    assert fullres["spacing"] == [1.0, 1.0, 1.0]
    assert fullres["median_image_size_in_voxels"] == [35.5, 51.0, 35.0]
    assert fullres["architecture"]["strides"] == [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert fullres["architecture"]["kernel_sizes"] == [[3, 3, 3]] * 4
    assert fullres["architecture"]["features_per_stage"] == [32, 64, 128, 256]
    assert fullres["normalization_schemes"] == ["ZScore"]
    assert fullres["use_mask_for_norm"] == [False]
    twod = plans["configurations"]["2d"]
    assert (twod["patch_size"], twod["batch_size"]) == ([56, 40], 141)
    assert "3d_lowres" not in plans["configurations"]
    folder = tmp_path / "Dataset004_Hippocampus" / "AutoSegPlans_3d_fullres"
    assert len(list(folder.glob("*_seg.npy"))) == 100
    assert len(list((tmp_path / "Dataset004_Hippocampus" / "gt_segmentations").iterdir())) == 100


def test_one_process_count_per_configuration_with_a_skipped_one(make_dataset, tmp_path, capsys):
    make_dataset("Dataset014_Np", num_cases=2, shape=(12, 16, 16))
    argv = ["plan_and_preprocess", "-d", "14", "-c", "2d", "3d_fullres", "3d_lowres"]
    code, out, err = run(capsys, *argv, "-np", "1", "1", "2", *roots(tmp_path))
    assert code == 0, err
    assert "Skipped (not in the plans): 3d_lowres" in out


def test_an_unforeseen_os_error_is_one_line_naming_the_path(make_dataset, tmp_path, capsys):
    """A disk that fills up or disappears mid-run is not the user's bug: no traceback."""
    import errno

    from autoseg.cli import data_commands

    make_dataset("Dataset007_Good")

    def full_disk(*_args: object, **_kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "full.json"))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(data_commands, "inspect_dataset", full_disk)
        code, out, err = run(capsys, "verify", "-d", "7", "-np", "1", *roots(tmp_path))
    assert code == 2
    assert err.strip().splitlines() == [
        f"autoseg verify: error: {tmp_path / 'full.json'}: No space left on device. Fix: check "
        "that the drive is present, writable and has free space, then run the command again."
    ]
    assert "Traceback" not in out + err


def test_verify_ends_with_the_summary_table(make_dataset, tmp_path, capsys):
    make_dataset("Dataset009_Summary", num_cases=2)
    code, out, _ = run(capsys, "verify", "-d", "9", "-np", "1", *roots(tmp_path))
    assert code == 0
    tail = out.splitlines()[-7:]
    assert tail[0] == "Summary:"
    assert tail[1].split() == ["cases", "2", "found", "(2", "declared),", "2", "readable"]
    assert "problems" in tail[-1]
