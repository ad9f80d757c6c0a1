"""A model's plans reused for another dataset: identical but for the names, new cases only on
re-run, and one-line refusals for datasets the model cannot serve."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from Testing.engine.interop.nnunet_reference import MODELS

from autoseg.dataset import DATASET_JSON
from autoseg.errors import AutoSegError
from autoseg.inference.model_files import read_model_plans
from autoseg.paths import DataRoots
from autoseg.planning.plans_transfer import PLANS_FROM_KEY, transferred_from
from autoseg.plans import Plans
from autoseg.stages import DatasetFolders, plan_dataset_from_model, preprocess_configurations
from autoseg.synthetic import SyntheticSpec, make_synthetic_dataset

MODEL_NAME = "AutoSegTrainer__AutoSegPlans__3d_fullres"
# Other spacing and size than the tiny dataset's, so that its own plans would differ.
TARGET_SPEC = SyntheticSpec(shape=(10, 24, 24), spacing=(0.8, 0.8, 2.0), seed=5)


def model_folder_of(roots: DataRoots, dataset: str, folder: Path) -> Path:
    """A model folder as training writes it (the plans and dataset.json are all planning reads)."""
    folder.mkdir(parents=True)
    preprocessed = roots.preprocessed / dataset
    shutil.copyfile(preprocessed / "AutoSegPlans.json", folder / "plans.json")
    shutil.copyfile(preprocessed / DATASET_JSON, folder / DATASET_JSON)
    return folder


@pytest.fixture
def model(tiny_preprocessed: DataRoots, tmp_path: Path) -> Path:
    return model_folder_of(tiny_preprocessed, "Dataset901_Tiny", tmp_path / "model" / MODEL_NAME)


def target_folders(tmp_path: Path, num_cases: int = 2, channels: int = 1) -> DatasetFolders:
    roots = DataRoots(tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results")
    spec = replace(TARGET_SPEC, num_channels=channels)
    make_synthetic_dataset(roots.raw, 950, "Target", num_cases, spec)
    return DatasetFolders.resolve(950, roots)


def without_names(plans: Plans) -> dict:
    """The plans' JSON without what a transfer renames."""
    data = plans.to_json()
    for key in ("dataset_name", "plans_name", "image_reader_writer", PLANS_FROM_KEY, "origin"):
        data.pop(key, None)
    for config in data["configurations"].values():
        config.pop("data_identifier", None)
    return data


def test_plans_are_the_models_except_the_names(model: Path, tmp_path: Path) -> None:
    folders = target_folders(tmp_path)
    result = plan_dataset_from_model(folders, model, "FromTiny")
    source = read_model_plans(model).plans
    written = Plans.load(folders.plans_file("FromTiny"))
    assert written == result.plans
    assert without_names(written) == without_names(source)
    assert written.foreground_intensity_properties_per_channel == (
        source.foreground_intensity_properties_per_channel
    )
    assert written.dataset_name == "Dataset950_Target"
    assert written.plans_name == "FromTiny"
    assert written.configuration("3d_fullres").data_identifier == "FromTiny_3d_fullres"
    assert transferred_from(written)["model_folder"] == str(model.resolve())
    assert transferred_from(written)["dataset_name"] == "Dataset901_Tiny"
    assert result.added_labels == ()
    assert (folders.preprocessed / DATASET_JSON).is_file()  # training reads it from there


def _stored(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_a_rerun_after_cases_were_added_preprocesses_only_the_new_ones(
    model: Path, tmp_path: Path
) -> None:
    folders = target_folders(tmp_path, num_cases=2)
    plans = plan_dataset_from_model(folders, model).plans
    preprocess_configurations(folders, plans.plans_name, ["3d_fullres"], 1)
    data = folders.preprocessed / plans.configuration("3d_fullres").data_identifier
    before = _stored(data)
    assert {"case_000.json", "case_001.json"} <= set(before)

    grown = target_folders(tmp_path / "grown", num_cases=3)  # same seed: same first two cases
    for sub in ("imagesTr", "labelsTr"):
        for file in (grown.raw / sub).glob("case_002*"):
            shutil.copy2(file, folders.raw / sub / file.name)
    dataset_json = json.loads((folders.raw / DATASET_JSON).read_text())
    (folders.raw / DATASET_JSON).write_text(json.dumps({**dataset_json, "numTraining": 3}))
    plans = plan_dataset_from_model(folders, model).plans
    preprocess_configurations(folders, plans.plans_name, ["3d_fullres"], 1)

    after = _stored(data)
    assert {name: after[name] for name in before} == before  # old cases untouched
    assert "case_002.json" in after


def _edit_dataset_json(folders: DatasetFolders, **changes) -> None:
    path = folders.raw / DATASET_JSON
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_added_labels_are_allowed_and_reported(model: Path, tmp_path: Path) -> None:
    folders = target_folders(tmp_path)
    labels = json.loads((model / DATASET_JSON).read_text())["labels"]
    _edit_dataset_json(folders, labels={**labels, "vessel": 3})
    assert plan_dataset_from_model(folders, model).added_labels == ("vessel",)


@pytest.mark.parametrize(
    ("channels", "changes", "named"),
    [
        (2, {}, "channels"),  # CT and T2 for a CT model
        (1, {"channel_names": {"0": "T1"}}, "channels"),
        (1, {"labels": {"background": 0, "organ": 1}}, "lesion"),
        (1, {"labels": {"background": 0, "organ": 2, "lesion": 1}}, "organ"),
    ],
)
def test_a_dataset_the_model_cannot_serve_is_refused_in_one_line(
    model: Path, tmp_path: Path, channels: int, changes: dict, named: str
) -> None:
    folders = target_folders(tmp_path, channels=channels)
    _edit_dataset_json(folders, **changes)
    with pytest.raises(AutoSegError) as error:
        plan_dataset_from_model(folders, model)
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert named in message
    assert "Fix:" in message
    assert not folders.plans_file("AutoSegPlans").exists()


def test_a_folder_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    folders = target_folders(tmp_path)
    with pytest.raises(AutoSegError, match="model folder not found"):
        plan_dataset_from_model(folders, tmp_path / "nowhere" / MODEL_NAME)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(AutoSegError, match="<trainer>__<plans>__<configuration>"):
        plan_dataset_from_model(folders, plain)
    incomplete = tmp_path / MODEL_NAME
    incomplete.mkdir()
    with pytest.raises(AutoSegError, match=r"plans\.json is missing"):
        plan_dataset_from_model(folders, incomplete)


def test_an_nnunet_model_folders_plans_are_translated(tmp_path: Path) -> None:
    nnunet_model = MODELS / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    roots = DataRoots(tmp_path / "raw", tmp_path / "preprocessed", tmp_path / "results")
    make_synthetic_dataset(roots.raw, 951, "TwoChannel", 2, SyntheticSpec(num_channels=2))
    folders = DatasetFolders.resolve(951, roots)
    source = json.loads((nnunet_model / DATASET_JSON).read_text())
    _edit_dataset_json(
        folders, channel_names=source["channel_names"], labels={**source["labels"], "rim": 3}
    )
    result = plan_dataset_from_model(folders, nnunet_model)
    config = result.plans.configuration("3d_fullres")
    nnunet_plans = json.loads((nnunet_model / "plans.json").read_text())
    nnunet_config = nnunet_plans["configurations"]["3d_fullres"]
    assert list(config.spacing) == pytest.approx(nnunet_config["spacing"])
    assert list(config.patch_size) == nnunet_config["patch_size"]
    assert config.preprocessing.normalization_schemes == ("CT", "ZScore")
    assert config.data_identifier == "AutoSegPlans_3d_fullres"
    assert result.plans.intensity_stats()[0].percentile_99_5 == pytest.approx(
        nnunet_plans["foreground_intensity_properties_per_channel"]["0"]["percentile_99_5"]
    )
    assert result.added_labels == ("rim",)
    assert "origin" not in Plans.load(folders.plans_file("AutoSegPlans")).extra


def test_a_kept_model_version_serves_as_the_model(model: Path, tmp_path: Path) -> None:
    version = model / "versions" / "1"
    shutil.copytree(model, version, ignore=shutil.ignore_patterns("versions"))
    folders = target_folders(tmp_path)
    plans = plan_dataset_from_model(folders, version).plans
    assert transferred_from(plans)["configuration"] == "3d_fullres"
    assert transferred_from(plans)["model_folder"] == str(version.resolve())
