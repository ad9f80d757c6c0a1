"""DataRoots (flags and environment) and dataset name resolution."""

from __future__ import annotations

import os
from pathlib import Path, PureWindowsPath

import pytest

from autoseg.errors import AutoSegError
from autoseg.paths import (
    DataRoots,
    dataset_folder_name,
    dataset_id,
    make_folder,
    resolve_dataset_name,
)


def test_from_env_reads_nnunet_names():
    roots = DataRoots.from_env(
        {"nnUNet_raw": "/r", "nnUNet_preprocessed": "/p", "nnUNet_results": "/res"}
    )
    assert roots == DataRoots(Path("/r"), Path("/p"), Path("/res"))


def test_autoseg_names_take_precedence():
    env = {"nnUNet_raw": "/old", "AUTOSEG_RAW": "/new", "nnUNet_results": "/res"}
    roots = DataRoots.from_env(env)
    assert roots.raw == Path("/new")
    assert roots.results == Path("/res")
    assert roots.preprocessed is None


def test_empty_variables_count_as_unset():
    assert DataRoots.from_env({"AUTOSEG_RAW": "", "nnUNet_raw": "/r"}).raw == Path("/r")
    assert DataRoots.from_env({"AUTOSEG_RAW": "  "}).raw is None


def test_overrides_win_over_environment():
    roots = DataRoots.from_env({"AUTOSEG_RAW": "/env", "AUTOSEG_RESULTS": "/res"})
    changed = roots.with_overrides(raw="/flag", preprocessed=None)
    assert changed.raw == Path("/flag")
    assert changed.results == Path("/res")
    assert roots.raw == Path("/env")  # frozen: the original is unchanged


@pytest.mark.parametrize(
    ("method", "flag", "variable"),
    [
        ("require_raw", "--raw", "AUTOSEG_RAW"),
        ("require_preprocessed", "--preprocessed", "AUTOSEG_PREPROCESSED"),
        ("require_results", "--results", "AUTOSEG_RESULTS"),
    ],
)
def test_require_names_flag_and_variable(method, flag, variable):
    with pytest.raises(AutoSegError) as info:
        getattr(DataRoots(), method)()
    assert flag in str(info.value)
    assert variable in str(info.value)


def test_require_returns_the_path(tmp_path):
    assert DataRoots(raw=tmp_path).require_raw() == tmp_path


def test_windows_path_string_is_kept_as_given():
    text = "D:\\data\\nnUNet_raw"
    roots = DataRoots.from_env({"nnUNet_raw": text})
    assert str(roots.require_raw()) == text
    assert str(roots.with_overrides(results="E:\\out").results) == "E:\\out"
    assert PureWindowsPath(str(roots.raw)).parts == ("D:\\", "data", "nnUNet_raw")


def test_non_ascii_paths(tmp_path):
    folder = tmp_path / "Daten_für_Übung" / "raw"
    (folder / "Dataset012_Löwe").mkdir(parents=True)
    roots = DataRoots.from_env({"AUTOSEG_RAW": str(folder)})
    assert resolve_dataset_name(12, roots) == "Dataset012_Löwe"


def test_dataset_id_and_folder_name():
    assert dataset_id("Dataset004_Hippocampus") == 4
    assert dataset_id("Dataset1234_Big") == 1234
    assert dataset_folder_name(4, "Hippocampus") == "Dataset004_Hippocampus"
    with pytest.raises(AutoSegError, match="DatasetXXX_Name"):
        dataset_id("Task04_Hippocampus")
    with pytest.raises(AutoSegError):
        dataset_folder_name(4, "bad/name")
    with pytest.raises(AutoSegError):
        dataset_folder_name(-1, "x")


@pytest.fixture
def roots(tmp_path) -> DataRoots:
    for root, name in [
        ("raw", "Dataset004_Hippocampus"),
        ("raw", "Dataset010_Colon"),
        ("preprocessed", "Dataset004_Hippocampus"),
        ("results", "Dataset027_ACDC"),
    ]:
        (tmp_path / root / name).mkdir(parents=True)
    (tmp_path / "raw" / "not_a_dataset").mkdir()
    return DataRoots(tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results")


@pytest.mark.parametrize("identifier", ["4", "004", 4, " 4 ", "Hippocampus"])
def test_resolve_forms(roots, identifier):
    assert resolve_dataset_name(identifier, roots) == "Dataset004_Hippocampus"


def test_resolve_searches_all_roots(roots):
    assert resolve_dataset_name(27, roots) == "Dataset027_ACDC"


def test_full_name_is_returned_as_given(roots):
    assert resolve_dataset_name("Dataset500_New", roots) == "Dataset500_New"


def test_not_found_lists_existing(roots):
    with pytest.raises(AutoSegError) as info:
        resolve_dataset_name(7, roots)
    message = str(info.value)
    assert "not found" in message
    assert "Dataset004_Hippocampus" in message
    assert "Dataset027_ACDC" in message
    assert "not_a_dataset" not in message


def test_ambiguous_id(roots, tmp_path):
    (tmp_path / "results" / "Dataset004_Other").mkdir()
    with pytest.raises(AutoSegError, match="ambiguous"):
        resolve_dataset_name("004", roots)


def test_no_roots_configured():
    with pytest.raises(AutoSegError, match="none is configured"):
        resolve_dataset_name(4, DataRoots())


def test_missing_root_folder_is_skipped(tmp_path):
    (tmp_path / "raw" / "Dataset004_Hippocampus").mkdir(parents=True)
    roots = DataRoots(tmp_path / "raw", tmp_path / "does_not_exist", None)
    assert resolve_dataset_name(4, roots) == "Dataset004_Hippocampus"


UNWRITABLE_ROOT = Path("/sys")  # refuses new entries even to root (chmod tricks do not)


def test_make_folder_creates_parents_and_is_idempotent(tmp_path: Path):
    folder = make_folder(tmp_path / "a" / "b", "the output folder (-o)")
    assert folder.is_dir()
    assert make_folder(folder) == folder
    assert list(folder.iterdir()) == []  # the write test leaves nothing behind


@pytest.mark.parametrize("depth", [0, 2])
def test_a_file_in_the_way_is_named(tmp_path: Path, depth: int):
    blocking = tmp_path / "data.txt"
    blocking.write_text("mine")
    folder = blocking.joinpath(*["sub"] * depth)
    with pytest.raises(AutoSegError) as error:
        make_folder(folder, "the output folder (-o)")
    message = str(error.value)
    assert message.startswith(f"{folder}: cannot create the output folder (-o) ")
    assert f"({blocking} is a file, not a folder)" in message
    assert "Fix: choose another path" in message
    assert "\n" not in message
    assert blocking.read_text() == "mine"


@pytest.mark.skipif(not UNWRITABLE_ROOT.is_dir(), reason="needs Linux /sys")
def test_an_unwritable_place_gives_the_os_reason():
    folder = UNWRITABLE_ROOT / "autoseg-test" / "out"
    with pytest.raises(AutoSegError, match=r"^/sys/autoseg-test/out: cannot create .*\(Operation"):
        make_folder(folder, "the results folder (--results)")
    with pytest.raises(AutoSegError, match=r"^/sys: cannot write in the results folder .*Fix"):
        make_folder(UNWRITABLE_ROOT, "the results folder (--results)")
    make_folder(UNWRITABLE_ROOT, check_writable=False)  # exists: enough when only reading


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write")
def test_a_read_only_folder_fails_the_write_test(tmp_path: Path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(AutoSegError, match=r"cannot write in .*Permission denied"):
            make_folder(folder)
    finally:
        folder.chmod(0o700)
