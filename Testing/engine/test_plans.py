from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoseg.errors import AutoSegError
from autoseg.plans import (
    ArchitectureSpec,
    ConfigurationPlan,
    IntensityStats,
    Plans,
    PreprocessingSpec,
)


def make_plans() -> Plans:
    arch = ArchitectureSpec(
        "PlainConvUNet", (32, 64), ((3, 3, 3), (3, 3, 3)), ((1, 1, 1), (2, 2, 2)), (2, 2), (2,)
    )
    prep = PreprocessingSpec((1.0, 1.0, 1.0), ("ZScore",), (False,))
    fullres = ConfigurationPlan(
        "3d_fullres", "P_3d_fullres", (8, 8, 8), 2, (10.0, 10.0, 10.0), False, prep, arch
    )
    cascade = ConfigurationPlan(
        "3d_cascade_fullres",
        "P_3d_fullres",
        (8, 8, 8),
        2,
        (10.0, 10.0, 10.0),
        False,
        prep,
        arch,
        previous_stage="3d_lowres",
        inherits_from="3d_fullres",
    )
    return Plans(
        dataset_name="Dataset001_X",
        plans_name="P",
        image_reader_writer="SimpleITKIO",
        transpose_forward=(0, 1, 2),
        transpose_backward=(0, 1, 2),
        original_median_spacing_after_transp=(1.0, 1.0, 1.0),
        original_median_shape_after_transp=(10.0, 10.0, 10.0),
        foreground_intensity_properties_per_channel={"0": IntensityStats(1, 1, 1, 0, 2, 0, 2)},
        configurations={"3d_fullres": fullres, "3d_cascade_fullres": cascade},
    )


def test_inheriting_configuration_stores_only_differences(tmp_path: Path):
    plans = make_plans()
    plans.save(tmp_path / "plans.json")
    stored = json.loads((tmp_path / "plans.json").read_text())["configurations"][
        "3d_cascade_fullres"
    ]
    assert stored == {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    assert Plans.load(tmp_path / "plans.json") == plans


def test_child_keys_override_parent_keys():
    data = make_plans().to_json()
    data["configurations"]["3d_cascade_fullres"]["batch_size"] = 7
    plans = Plans.from_json(data)
    assert plans.configuration("3d_cascade_fullres").batch_size == 7
    assert plans.configuration("3d_fullres").batch_size == 2


def test_inheritance_cycle_is_rejected():
    data = make_plans().to_json()
    data["configurations"]["3d_fullres"]["inherits_from"] = "3d_cascade_fullres"
    with pytest.raises(AutoSegError, match="cycle"):
        Plans.from_json(data)


def test_unknown_parent_and_malformed_configuration_are_named():
    data = make_plans().to_json()
    data["configurations"]["3d_cascade_fullres"]["inherits_from"] = "nope"
    with pytest.raises(AutoSegError, match="unknown 'nope'"):
        Plans.from_json(data)
    data = make_plans().to_json()
    del data["configurations"]["3d_fullres"]["patch_size"]
    with pytest.raises(AutoSegError, match="'3d_fullres' is malformed"):
        Plans.from_json(data)


def test_foreign_or_future_files_get_a_clear_error(tmp_path: Path):
    (tmp_path / "nnUNetPlans.json").write_text(json.dumps({"plans_name": "nnUNetPlans"}))
    with pytest.raises(AutoSegError, match="not an AutoSeg plans file"):
        Plans.load(tmp_path / "nnUNetPlans.json")
    data = make_plans().to_json()
    data["schema_version"] = 99
    with pytest.raises(AutoSegError, match="schema_version 99"):
        Plans.from_json(data)
    with pytest.raises(AutoSegError, match="not found"):
        Plans.load(tmp_path / "missing.json")


def test_unknown_configuration_lists_the_known_ones():
    with pytest.raises(AutoSegError, match="available: 3d_fullres, 3d_cascade_fullres"):
        make_plans().configuration("2d")
