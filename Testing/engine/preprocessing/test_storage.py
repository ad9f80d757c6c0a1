"""Storage: round trip, memory-mapped patch reads, completeness and no pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoseg.preprocessing.case import PreprocessedCase
from autoseg.preprocessing.storage import (
    case_ids,
    is_complete,
    load_case,
    load_class_locations,
    load_properties,
    remove_case,
    remove_cases_except,
    save_case,
    stored_provenance,
)


def _case(with_seg: bool = True) -> PreprocessedCase:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(2, 10, 12, 14)).astype(np.float32)
    seg = rng.integers(-1, 3, (1, 10, 12, 14)).astype(np.int8) if with_seg else None
    properties = {
        "spacing": (1.0, np.float64(2.0), 3.0),
        "shape_before_cropping": np.array([10, 12, 14]),
        "bbox_used_for_cropping": [[0, 10], [0, 12], [0, 14]],
        "geometry": {"spacing": [1.0, 2.0, 3.0], "origin": [0, 0, 0], "direction": [1] * 9},
    }
    locations = {"1": np.array([[1, 2, 3], [4, 5, 6]]), "(1, 2)": np.zeros((0, 3), np.int32)}
    return PreprocessedCase(data, seg, properties, locations if with_seg else {})


def test_round_trip(tmp_path: Path) -> None:
    case = _case()
    save_case(tmp_path, "caseä_001", case)  # non-ASCII ids work
    data, seg, properties = load_case(tmp_path, "caseä_001", mmap=False)
    np.testing.assert_array_equal(data, case.data)
    np.testing.assert_array_equal(seg, case.seg)
    assert seg.dtype == np.int8
    assert properties["spacing"] == [1.0, 2.0, 3.0]
    assert properties["shape_before_cropping"] == [10, 12, 14]
    assert load_properties(tmp_path, "caseä_001") == properties
    locations = load_class_locations(tmp_path, "caseä_001")
    assert list(locations) == ["1", "(1, 2)"]
    np.testing.assert_array_equal(locations["1"], [[1, 2, 3], [4, 5, 6]])
    assert locations["1"].dtype == np.int32
    assert locations["(1, 2)"].shape == (0, 3)


def test_mmap_patch_read(tmp_path: Path) -> None:
    case = _case()
    save_case(tmp_path, "c", case)
    data, seg, _ = load_case(tmp_path, "c")
    assert isinstance(data, np.memmap)
    assert not data.flags.writeable
    np.testing.assert_array_equal(data[:, 2:6, 3:9, 4:8], case.data[:, 2:6, 3:9, 4:8])
    np.testing.assert_array_equal(seg[:, 5], case.seg[:, 5])


def test_completeness_and_listing(tmp_path: Path) -> None:
    save_case(tmp_path, "b", _case())
    save_case(tmp_path, "a", _case(with_seg=False))
    (tmp_path / "broken.npy").write_bytes(b"")  # no properties -> incomplete
    assert case_ids(tmp_path) == ["a", "b"]
    assert is_complete(tmp_path, "a")
    assert not is_complete(tmp_path, "broken")
    _, seg, _ = load_case(tmp_path, "a")
    assert seg is None
    assert load_class_locations(tmp_path, "a") == {}
    assert case_ids(tmp_path / "missing") == []
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary leftovers


def test_files_load_without_pickle(tmp_path: Path) -> None:
    save_case(tmp_path, "c", _case())
    for path in tmp_path.iterdir():
        if path.suffix in (".npy", ".npz"):
            loaded = np.load(path, allow_pickle=False)
            if hasattr(loaded, "close"):
                loaded.close()


def test_provenance_is_stored_and_read_back(tmp_path: Path) -> None:
    provenance = {"format": 1, "settings": "abc", "sources": {"images": [], "label": None}}
    save_case(tmp_path, "a", _case(), provenance)
    save_case(tmp_path, "old", _case())  # as the previous version wrote cases
    assert stored_provenance(tmp_path, "a") == provenance
    assert stored_provenance(tmp_path, "old") is None
    (tmp_path / "a.npy").unlink()
    assert stored_provenance(tmp_path, "a") is None  # incomplete counts as unknown


def test_removing_other_cases_spares_kept_files_with_ambiguous_names(tmp_path: Path) -> None:
    for case_id in ("x", "x_seg", "gone"):
        save_case(tmp_path, case_id, _case())
    (tmp_path / "notes.json").write_text("{}")  # not a case of ours (no arrays)
    (tmp_path / ".gone.npy.tmp.npy").write_text("")  # a write in progress
    assert remove_cases_except(tmp_path, ["x_seg"]) == ["gone", "x"]
    assert case_ids(tmp_path) == ["x_seg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".gone.npy.tmp.npy",
        "notes.json",
        "x_seg.json",
        "x_seg.npy",
        "x_seg_locations.npz",
        "x_seg_seg.npy",
    ]
    remove_case(tmp_path, "x_seg")
    assert case_ids(tmp_path) == []
