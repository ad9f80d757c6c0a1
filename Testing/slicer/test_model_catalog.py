"""model_catalog: what the Predict panel learns from a model's JSON files, and clear refusals."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from autoseg.model_sharing import export_model
from AutoSegPredictLib.model_catalog import (
    ModelFolderError,
    describe_model,
    import_model_zip,
)

LABELS = {"background": 0, "anterior": 1, "posterior": 2}


def make_model(
    dataset: Path,
    configuration: str = "3d_fullres",
    folds: Sequence[str] = ("0", "1"),
    *,
    labels: Mapping[str, Any] = LABELS,
    extra_json: Mapping[str, Any] | None = None,
    trainer: str = "AutoSegTrainer",
) -> Path:
    """A model folder as training writes it (JSON files, empty checkpoint files)."""
    folder = dataset / f"{trainer}__AutoSegPlans__{configuration}"
    folder.mkdir(parents=True)
    dataset_json = {
        "channel_names": {"0": "MRI"},
        "labels": dict(labels),
        "numTraining": 4,
        "file_ending": ".nii.gz",
        **(extra_json or {}),
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json), encoding="utf-8")
    (folder / "plans.json").write_text("{}", encoding="utf-8")
    for fold in folds:
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"")
    return folder


def write_selection(dataset: Path, configurations: Sequence[str], pp_file: str | None) -> None:
    """inference_information.json as find_best_configuration writes it (the parts that matter)."""
    models = [
        {
            "configuration": c,
            "trainer": "AutoSegTrainer",
            "plans": "AutoSegPlans",
            "folder": f"AutoSegTrainer__AutoSegPlans__{c}",
        }
        for c in configurations
    ]
    best = {"name": "x", "selected_models": models, "postprocessing_file": pp_file}
    information = {"dataset": dataset.name, "best_model_or_ensemble": best}
    (dataset / "inference_information.json").write_text(json.dumps(information), encoding="utf-8")


def test_a_model_folder_lists_labels_channels_and_trained_folds(tmp_path: Path) -> None:
    model = make_model(tmp_path / "Dataset004_Hippocampus", folds=("10", "2", "all"))
    (model / "fold_3").mkdir()  # started, no final checkpoint yet
    (model / "fold_x").mkdir()
    (model / "fold_x" / "checkpoint_final.pth").write_bytes(b"")
    description = describe_model(model)
    assert description.kind == "model"
    assert description.path == model
    assert description.dataset_name == "Dataset004_Hippocampus"
    assert description.labels == {"anterior": 1, "posterior": 2}
    assert description.channel_names == ("MRI",)
    assert description.num_channels == 1
    assert description.file_ending == ".nii.gz"
    assert description.configurations == {"3d_fullres": ("2", "10", "all")}
    assert description.recommended is None
    assert description.has_postprocessing is False
    assert description.predict_folder == model


def test_a_dataset_folder_names_the_recommended_ensemble(tmp_path: Path) -> None:
    dataset = tmp_path / "Dataset004_Hippocampus"
    make_model(dataset, "2d", folds=("0",))
    model = make_model(dataset, "3d_fullres")
    make_model(dataset, "3d_lowres", folds=())
    pp_file = "ensembles/ensemble___a___b___0_1/postprocessing.json"
    (dataset / pp_file).parent.mkdir(parents=True)
    (dataset / pp_file).write_text("{}", encoding="utf-8")
    write_selection(dataset, ["2d", "3d_fullres"], pp_file)
    description = describe_model(dataset)
    assert description.kind == "dataset"
    assert description.dataset_name == "Dataset004_Hippocampus"
    assert description.recommended == "ensemble of 2d + 3d_fullres"
    assert description.recommended_configurations == ("2d", "3d_fullres")
    assert description.has_postprocessing is True
    assert description.configurations == {
        "2d": ("0",),
        "3d_fullres": ("0", "1"),
        "3d_lowres": (),
    }
    assert description.model_folders["3d_fullres"] == model
    assert description.predict_folder == dataset
    summary = description.summary()
    assert "anterior, posterior" in summary
    assert "Recommended: ensemble of 2d + 3d_fullres + post-processing" in summary
    assert "3d_lowres" not in summary  # nothing trained there yet


def test_a_single_recommendation_without_postprocessing_file(tmp_path: Path) -> None:
    dataset = tmp_path / "Dataset010_Liver"
    make_model(dataset, "3d_fullres")
    write_selection(dataset, ["3d_fullres"], "gone/postprocessing.json")
    description = describe_model(dataset)
    assert description.recommended == "3d_fullres"
    assert description.has_postprocessing is False


def test_without_selection_the_only_model_is_what_predict_gets(tmp_path: Path) -> None:
    dataset = tmp_path / "Dataset010_Liver"
    model = make_model(dataset, "2d")
    (dataset / "ensembles").mkdir()  # not a model folder
    description = describe_model(dataset)
    assert description.recommended is None
    assert description.predict_folder == model
    make_model(dataset, "3d_fullres")
    assert describe_model(dataset).predict_folder == dataset


def test_models_of_two_trainers_are_keyed_by_folder_name(tmp_path: Path) -> None:
    dataset = tmp_path / "Dataset010_Liver"
    make_model(dataset, "3d_fullres")
    make_model(dataset, "3d_fullres", trainer="OtherTrainer")
    make_model(dataset, "2d")
    keys = set(describe_model(dataset).configurations)
    assert keys == {
        "AutoSegTrainer__AutoSegPlans__3d_fullres",
        "OtherTrainer__AutoSegPlans__3d_fullres",
        "2d",
    }


def test_region_labels_are_listed_under_the_value_written_for_them(tmp_path: Path) -> None:
    labels = {
        "background": 0,
        "whole tumor": [1, 2, 3],
        "tumor core": [2, 3],
        "enhancing": 3,
        "ignore": 4,
    }
    extra = {"regions_class_order": [1, 2, 3]}
    model = make_model(tmp_path / "Dataset137_BraTS", labels=labels, extra_json=extra)
    assert describe_model(model).labels == {"whole tumor": 1, "tumor core": 2, "enhancing": 3}


def test_the_ignore_label_is_never_a_segment(tmp_path: Path) -> None:
    labels = {"background": 0, "vessel": 1, "ignore": 2}
    model = make_model(tmp_path / "Dataset020_Vessels", labels=labels)
    assert describe_model(model).labels == {"vessel": 1}


def _refusal(path: Path) -> str:
    with pytest.raises(ModelFolderError) as caught:
        describe_model(path)
    assert isinstance(caught.value, ValueError)  # what the module panel catches
    return str(caught.value)


def test_folders_that_are_no_model_are_refused_with_what_they_should_hold(tmp_path: Path) -> None:
    assert "folder not found" in _refusal(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    message = _refusal(empty)
    assert str(empty) in message
    assert "inference_information.json" in message
    assert "plans.json, dataset.json and fold_<k>/checkpoint_final.pth" in message
    results = tmp_path / "results"
    make_model(results / "Dataset004_Hippocampus")
    assert "choose one of: Dataset004_Hippocampus" in _refusal(results)
    fold = (
        results / "Dataset004_Hippocampus" / "AutoSegTrainer__AutoSegPlans__3d_fullres" / "fold_0"
    )
    assert f"choose its parent folder {fold.parent}" in _refusal(fold)


def test_a_model_without_checkpoints_is_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "Dataset004_Hippocampus", folds=())
    assert "no fold_<k> folder holds checkpoint_final.pth" in _refusal(model)
    assert "nothing to predict with" in _refusal(model.parent)


def test_a_broken_dataset_json_names_the_file(tmp_path: Path) -> None:
    model = make_model(tmp_path / "Dataset004_Hippocampus", labels={"tumor": 1})
    message = _refusal(model)
    assert str(model / "dataset.json") in message
    assert "background" in message


def test_a_damaged_or_dangling_selection_is_refused(tmp_path: Path) -> None:
    dataset = tmp_path / "Dataset004_Hippocampus"
    make_model(dataset)
    (dataset / "inference_information.json").write_text("{not json", encoding="utf-8")
    assert "inference_information.json is damaged" in _refusal(dataset)
    write_selection(dataset, ["2d"], None)
    message = _refusal(dataset)
    assert "recommends AutoSegTrainer__AutoSegPlans__2d" in message
    assert "missing" in message


def test_import_model_zip_returns_the_dataset_folder(tmp_path: Path) -> None:
    dataset = tmp_path / "source" / "Dataset004_Hippocampus"
    make_model(dataset)
    write_selection(dataset, ["3d_fullres"], None)
    archive = export_model(dataset, tmp_path / "model.zip")
    results = tmp_path / "results"
    imported = import_model_zip(archive, results)
    assert imported == results.resolve() / "Dataset004_Hippocampus"
    description = describe_model(imported)
    assert description.recommended == "3d_fullres"
    assert description.configurations == {"3d_fullres": ("0", "1")}
    with pytest.raises(ModelFolderError, match="already exists") as caught:
        import_model_zip(archive, results)
    assert isinstance(caught.value, ValueError)
    assert import_model_zip(archive, results, overwrite=True) == imported
