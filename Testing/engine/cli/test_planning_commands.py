"""``plan_and_preprocess --plans-from MODEL`` / ``plan_experiment --plans-from``: the model's plans
for a dataset, its configuration preprocessed, planner choices refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from Testing.engine.cli.test_cli import run
from Testing.engine.planning.test_plans_transfer import (
    MODEL_NAME,
    model_folder_of,
    target_folders,
)

from autoseg.paths import DataRoots
from autoseg.planning.plans_transfer import transferred_from
from autoseg.plans import Plans


@pytest.fixture
def model(tiny_preprocessed: DataRoots, tmp_path: Path) -> Path:
    return model_folder_of(tiny_preprocessed, "Dataset901_Tiny", tmp_path / "model" / MODEL_NAME)


def _roots(folders) -> list[str]:
    return [
        "--raw",
        str(folders.raw.parent),
        "--preprocessed",
        str(folders.preprocessed.parent),
        "--progress",
        "none",
    ]


def test_plan_and_preprocess_from_a_model(model: Path, tmp_path: Path, capsys) -> None:
    folders = target_folders(tmp_path)
    argv = ["plan_and_preprocess", "-d", "950", "--plans-from", str(model), "-np", "1"]
    code, out, err = run(capsys, *argv, *_roots(folders))
    assert code == 0, err
    plans = Plans.load(folders.plans_file("AutoSegPlans"))
    assert transferred_from(plans)["model_folder"] == str(model.resolve())
    assert f"the plans of {model}" in out
    # Only the model's configuration is preprocessed by default, and no fingerprint is needed.
    assert (folders.preprocessed / "AutoSegPlans_3d_fullres" / "case_000.json").is_file()
    assert not (folders.preprocessed / "AutoSegPlans_2d").exists()
    assert not folders.fingerprint_file.exists()
    assert "out of date" not in err
    assert "earlier fingerprint" not in err


def test_plan_experiment_from_a_model_with_another_plans_name(
    model: Path, tmp_path: Path, capsys
) -> None:
    folders = target_folders(tmp_path)
    argv = ["plan_experiment", "-d", "950", "--plans-from", str(model)]
    code, _, err = run(capsys, *argv, "-overwrite_plans_name", "Tuned", *_roots(folders))
    assert code == 0, err
    assert Plans.load(folders.plans_file("Tuned")).configuration("3d_fullres").data_identifier == (
        "Tuned_3d_fullres"
    )


def test_planner_choices_are_refused_with_plans_from(model: Path, tmp_path: Path, capsys) -> None:
    folders = target_folders(tmp_path)
    argv = ["plan_and_preprocess", "-d", "950", "--plans-from", str(model), "-pl", "ResEncM"]
    code, _, err = run(capsys, *argv, *_roots(folders))
    assert code != 0
    assert len(err.strip().splitlines()) == 1
    assert "-pl" in err
    assert "Fix:" in err


def test_a_channel_mismatch_is_one_line(model: Path, tmp_path: Path, capsys) -> None:
    folders = target_folders(tmp_path, channels=2)
    argv = ["plan_and_preprocess", "-d", "950", "--plans-from", str(model)]
    code, _, err = run(capsys, *argv, *_roots(folders))
    assert code != 0
    assert len(err.strip().splitlines()) == 1
    assert "channels" in err
    assert "Traceback" not in err
