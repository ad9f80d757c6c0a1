"""model_catalog: what the Predict panel learns from a model's files, judged by the engine's own
torch-free rules, and clear refusals up front for what ``autoseg predict -m`` would refuse."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from Testing.slicer.model_fixtures import NNUNET_DATASET, REPOSITORY, make_model

from autoseg.model_sharing import export_model
from AutoSegPredictLib.model_catalog import (
    ModelFolderError,
    describe_model,
    describe_zip,
    found_models,
    import_model_zip,
)

NNUNET_FULLRES = "nnUNetTrainer__nnUNetPlans__3d_fullres"
NNUNET_CASCADE = "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres"


def write_selection(
    dataset: Path, configurations: Sequence[str], pp_file: str | None, folds: Sequence[int] = (0,)
) -> None:
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
    information = {"dataset": dataset.name, "folds": list(folds), "best_model_or_ensemble": best}
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
    # what predict uses: the numbered folds in order ("all" only when it is the only one)
    assert description.configurations == {"3d_fullres": ("2", "10")}
    assert description.origin == "autoseg"
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
    assert description.recommended_folds == ("0",)
    assert description.kind == "dataset"
    assert description.dataset_name == "Dataset004_Hippocampus"
    assert description.recommended == "ensemble of 2d + 3d_fullres"
    assert description.recommended_configurations == ("2d", "3d_fullres")
    assert description.has_postprocessing is True
    assert description.configurations == {"2d": ("0",), "3d_fullres": ("0", "1")}
    assert list(description.unusable) == ["AutoSegTrainer__AutoSegPlans__3d_lowres"]
    assert description.model_folders["3d_fullres"] == model
    assert description.predict_folder == dataset
    summary = description.summary()
    assert "anterior, posterior" in summary
    assert "Recommended: ensemble of 2d + 3d_fullres, folds 0 + post-processing" in summary
    assert "Not usable: AutoSegTrainer__AutoSegPlans__3d_lowres: no fold_<k>" in summary


def test_a_recommendation_is_refused_as_predict_refuses_it(tmp_path: Path) -> None:
    dataset = tmp_path / "Dataset010_Liver"
    make_model(dataset, "3d_fullres")
    write_selection(dataset, ["3d_fullres"], None)
    description = describe_model(dataset)
    assert description.recommended == "3d_fullres"
    assert description.has_postprocessing is False
    write_selection(dataset, ["3d_fullres"], "gone/postprocessing.json")
    assert "post-processing file" in _refusal(dataset)
    write_selection(dataset, ["3d_fullres"], None, folds=(0, 4))  # fold 4 was never trained
    assert "fold_4" in _refusal(dataset)


def test_without_selection_the_only_model_is_what_predict_gets(tmp_path: Path) -> None:
    dataset = tmp_path / "Dataset010_Liver"
    model = make_model(dataset, "2d")
    (dataset / "ensembles").mkdir()  # not a model folder
    description = describe_model(dataset)
    assert description.recommended is None
    assert description.predict_folder == model
    make_model(dataset, "3d_fullres")  # predict would not know which one to run
    message = _refusal(dataset)
    assert "holds 2 models" in message
    assert "find_best_configuration Dataset010_Liver" in message


def test_models_of_two_trainers_are_keyed_by_folder_name(tmp_path: Path) -> None:
    dataset = tmp_path / "Dataset010_Liver"
    make_model(dataset, "3d_fullres")
    make_model(dataset, "3d_fullres", trainer="OtherTrainer")
    make_model(dataset, "2d")
    write_selection(dataset, ["2d"], None)
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
    assert "no model folder here can predict" in _refusal(model.parent)


def test_a_broken_dataset_json_names_the_file(tmp_path: Path) -> None:
    model = make_model(tmp_path / "Dataset004_Hippocampus", labels={"tumor": 1})
    message = _refusal(model)
    assert str(model / "dataset.json") in message
    assert "background" in message


def test_a_damaged_or_dangling_selection_is_refused(tmp_path: Path) -> None:
    dataset = tmp_path / "Dataset004_Hippocampus"
    make_model(dataset)
    (dataset / "inference_information.json").write_text("{not json", encoding="utf-8")
    assert "cannot be read as JSON" in _refusal(dataset)
    write_selection(dataset, ["2d"], None)
    message = _refusal(dataset)
    assert "AutoSegTrainer__AutoSegPlans__2d named in" in message
    assert "missing" in message


def test_import_model_zip_returns_the_dataset_folder(tmp_path: Path) -> None:
    dataset = tmp_path / "source" / "Dataset004_Hippocampus"
    make_model(dataset)
    write_selection(dataset, ["3d_fullres"], None)
    archive = export_model(dataset, tmp_path / "model.zip")
    results = tmp_path / "results"
    shown = describe_zip(archive, results)
    assert shown.dataset_name == "Dataset004_Hippocampus"
    assert shown.models == {"AutoSegTrainer__AutoSegPlans__3d_fullres": ("0", "1")}
    assert shown.labels == {"anterior": 1, "posterior": 2}
    assert shown.has_selection
    imported = import_model_zip(archive, results)
    assert imported == results.resolve() / "Dataset004_Hippocampus"
    description = describe_model(imported)
    assert description.recommended == "3d_fullres"
    assert description.configurations == {"3d_fullres": ("0", "1")}
    with pytest.raises(ModelFolderError, match="already exists") as caught:
        import_model_zip(archive, results)
    assert isinstance(caught.value, ValueError)
    assert import_model_zip(archive, results, overwrite=True) == imported


# ------------------------------------------------------------------------------------ nnU-Net


def test_an_nnunet_dataset_folder_runs_nnunets_own_selection() -> None:
    """nnUNetv2_find_best_configuration chose the ensemble of 3d_fullres and 2d with
    post-processing (its postprocessing.json is read, never the pickle)."""
    description = describe_model(NNUNET_DATASET)
    assert description.kind == "dataset"
    assert description.origin == "nnunet"
    assert description.tool == "nnU-Net v2"
    assert description.recommended == "ensemble of 3d_fullres + 2d"
    assert description.recommended_folds == ("0",)
    assert description.has_postprocessing
    assert description.predict_folder == NNUNET_DATASET
    assert description.labels == {"outer": 1, "inner": 2}
    assert description.channel_names == ("CT", "MR")
    assert description.configurations["3d_cascade_fullres"] == ("all",)
    assert description.configurations[f"{NNUNET_FULLRES}"] == ("0",)  # two trainers: full names
    assert not description.unusable
    assert description.summary().startswith("Dataset990_AutoSegInterop (nnU-Net v2): 2 label(s)")


@pytest.mark.parametrize(
    "model",
    [NNUNET_FULLRES, NNUNET_CASCADE, "nnUNetTrainer_5epochs__nnUNetResEncUNetMPlans__3d_fullres"],
)
def test_nnunet_model_folders_are_accepted(model: str) -> None:
    description = describe_model(NNUNET_DATASET / model)
    assert description.kind == "model"
    assert description.origin == "nnunet"
    assert description.predict_folder == NNUNET_DATASET / model
    assert description.dataset_name == "Dataset990_AutoSegInterop"


def _copy_nnunet(tmp_path: Path, *models: str) -> Path:
    dataset = tmp_path / NNUNET_DATASET.name
    for model in models:
        shutil.copytree(NNUNET_DATASET / model, dataset / model)
    return dataset


def test_what_predict_would_refuse_is_refused_up_front(tmp_path: Path) -> None:
    """A cascade without its previous stage, plans AutoSeg cannot reproduce, a selection whose
    post-processing JSON was not copied: refused when chosen, not after the engine started."""
    dataset = _copy_nnunet(tmp_path, NNUNET_CASCADE, NNUNET_FULLRES)
    assert "3d_lowres" in _refusal(dataset / NNUNET_CASCADE)
    plans_file = dataset / NNUNET_FULLRES / "plans.json"
    plans = json.loads(plans_file.read_text(encoding="utf-8"))
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "x.MyUNet"
    plans_file.write_text(json.dumps(plans), encoding="utf-8")
    assert "MyUNet" in _refusal(dataset / NNUNET_FULLRES)
    shutil.copy(NNUNET_DATASET / "inference_information.json", dataset)
    assert "nnUNetTrainer__nnUNetPlans__2d named in" in _refusal(dataset)  # not copied
    _copy_nnunet(tmp_path, "nnUNetTrainer__nnUNetPlans__2d")
    shutil.copyfile(NNUNET_DATASET / NNUNET_FULLRES / "plans.json", plans_file)
    assert "postprocessing.json" in _refusal(dataset)


def test_a_kept_version_is_a_model_folder(tmp_path: Path) -> None:
    model = make_model(tmp_path / "Dataset004_Hippocampus", folds=("0",))
    version = model / "versions" / "1"
    shutil.copytree(model, version, ignore=shutil.ignore_patterns("versions"))
    description = describe_model(version)
    assert description.configurations == {"3d_fullres v1": ("0",)}
    assert description.dataset_name == "Dataset004_Hippocampus"
    assert description.predict_folder == version


def _nnunet_zip(path: Path) -> Path:
    """A zip with the member names nnUNetv2_export_model_to_zip wrote for the fixture."""
    reference = REPOSITORY / "Testing" / "data" / "nnunet_reference"
    names = json.loads((reference / "export_members.json").read_text(encoding="utf-8"))
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            source = reference / "results" / name
            archive.writestr(name, source.read_bytes() if source.is_file() else b"{}")
    return path


def test_an_nnunet_zip_is_described_then_imported(tmp_path: Path) -> None:
    archive = _nnunet_zip(tmp_path / "nnunet.zip")
    results = tmp_path / "results"
    shown = describe_zip(archive, results)
    assert shown.dataset_name == "Dataset990_AutoSegInterop"
    assert shown.models == {"nnUNetTrainer__nnUNetPlans__2d": ("0",), NNUNET_FULLRES: ("0",)}
    assert shown.labels == {"outer": 1, "inner": 2}
    assert "predicts the recommended configuration(s)" in shown.summary()
    imported = import_model_zip(archive, results)
    assert describe_model(imported).recommended == "ensemble of 3d_fullres + 2d"


def test_an_unsafe_or_foreign_zip_is_refused_before_import(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(unsafe, "w") as archive:
        archive.writestr("Dataset004_X/../../evil.sh", b"echo")
    with pytest.raises(ModelFolderError, match="not a model zip that can be imported"):
        describe_zip(unsafe, tmp_path / "results")
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(ModelFolderError, match="not a readable zip"):
        describe_zip(tmp_path / "broken.zip", tmp_path / "results")


def test_the_model_list_shows_datasets_models_and_versions_of_every_root(tmp_path: Path) -> None:
    results = tmp_path / "results"
    model = make_model(results / "Dataset004_Hippocampus", folds=("0",))
    shutil.copytree(model, model / "versions" / "1", ignore=shutil.ignore_patterns("versions"))
    make_model(results / "Dataset004_Hippocampus", "2d", folds=())  # nothing to predict with
    entries = found_models([results, None, tmp_path / "missing", results, NNUNET_DATASET.parent])
    labels = [label for label, _ in entries]
    assert labels[:3] == [
        "Dataset004_Hippocampus",
        "Dataset004_Hippocampus / AutoSegTrainer__AutoSegPlans__3d_fullres: AutoSeg, folds 0",
        "Dataset004_Hippocampus / AutoSegTrainer__AutoSegPlans__3d_fullres (kept version 1): "
        "AutoSeg, folds 0",
    ]
    assert entries[2][1] == (model / "versions" / "1").absolute()
    assert labels[3] == "Dataset990_AutoSegInterop (recommended)"
    assert (
        "Dataset990_AutoSegInterop / nnUNetTrainer__nnUNetPlans__2d: nnU-Net v2, folds 0" in labels
    )
    assert len(labels) == 3 + 1 + 5
    for _, path in entries:
        describe_model(path)  # every entry is a folder predict accepts
