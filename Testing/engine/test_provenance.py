"""Raw file stamps and settings digests: what derived files record to tell whether they are current."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from autoseg.dataset import CaseFiles
from autoseg.errors import AutoSegError
from autoseg.provenance import (
    case_sources,
    describe_case_changes,
    file_stamp,
    named_list,
    settings_digest,
)


@dataclass(frozen=True)
class _Settings:
    spacing: tuple[float, ...]
    names: tuple[str, ...] = ("a",)


def test_file_stamp_has_name_size_and_mtime_but_no_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "case_000_0000.nii.gz"
    path.parent.mkdir()
    path.write_bytes(b"12345")
    stamp = file_stamp(path)
    assert stamp == {"name": path.name, "size": 5, "mtime_ns": path.stat().st_mtime_ns}
    moved = tmp_path / path.name
    path.rename(moved)  # a moved dataset keeps its stamps
    assert file_stamp(moved) == stamp


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AutoSegError, match=r"gone\.nii\.gz: cannot be read"):
        file_stamp(tmp_path / "gone.nii.gz")


def test_case_sources_cover_every_channel_and_the_label(tmp_path: Path) -> None:
    files = [tmp_path / n for n in ("c_0000.nrrd", "c_0001.nrrd", "c.nrrd")]
    for path in files:
        path.write_text("x")
    sources = case_sources(CaseFiles("c", tuple(files[:2]), files[2]))
    assert [s["name"] for s in sources["images"]] == ["c_0000.nrrd", "c_0001.nrrd"]
    assert sources["label"]["name"] == "c.nrrd"
    assert case_sources(CaseFiles("c", tuple(files[:1]), None))["label"] is None


def test_settings_digest_is_stable_and_sensitive() -> None:
    assert settings_digest({"b": 1, "a": [1, 2]}) == settings_digest({"a": (1, 2), "b": 1})
    assert settings_digest(_Settings((1.0, 2.0))) == settings_digest(_Settings((1.0, 2.0)))
    assert settings_digest(_Settings((1.0, 2.0))) != settings_digest(_Settings((1.0, 2.5)))
    nan = float("nan")
    assert settings_digest({"x": nan}) == settings_digest({"x": nan})


def test_case_changes_are_described_in_one_line() -> None:
    old = {"a": 1, "b": 2, "c": 3}
    new = {"b": 2, "c": 4, "d": 5, "e": 6}
    assert describe_case_changes(old, new) == (
        "2 case(s) added (d, e), 1 case(s) removed (a), 1 case(s) changed (c)"
    )
    assert describe_case_changes(old, dict(old)) is None
    assert named_list([f"c{i}" for i in range(8)]) == "c0, c1, c2, c3, c4 and 3 more"
