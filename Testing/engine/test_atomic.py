from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoseg.atomic import json_text, write_json_atomic
from autoseg.errors import AutoSegError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_compact_json_text_is_still_the_same_json(value):
    assert json.loads(json_text(value)) == value


def test_flat_lists_stay_on_one_line():
    assert '"patch_size": [40, 56, 40]' in json_text({"patch_size": [40, 56, 40]})


def test_failed_write_keeps_the_old_file(tmp_path: Path):
    target = tmp_path / "plans.json"
    write_json_atomic(target, {"version": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"version": object()})
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["plans.json"]


def test_crash_during_write_leaves_no_partial_file(tmp_path: Path):
    from autoseg.atomic import write_atomic

    target = tmp_path / "model.pt"
    target.write_bytes(b"old")

    def crash(file):
        file.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, crash)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_file_where_the_folder_belongs_is_one_clear_error(tmp_path: Path):
    (tmp_path / "plans").write_text("a file")
    with pytest.raises(AutoSegError, match=r"plans is a file, not a folder"):
        write_json_atomic(tmp_path / "plans" / "x" / "plans.json", {"a": 1})
    assert (tmp_path / "plans").read_text() == "a file"


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux /sys")
def test_an_unwritable_folder_is_one_clear_error():
    with pytest.raises(AutoSegError, match=r"^/sys: cannot write in the folder of plans\.json"):
        write_json_atomic(Path("/sys/plans.json"), {"a": 1})
