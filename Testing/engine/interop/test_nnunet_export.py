"""``export_model --format nnunet``: AutoSeg models in nnU-Net v2's zip, plans and checkpoint format.

The round trip (export, import_model, AutoSeg's nnU-Net loader) predicts exactly what the AutoSeg
model predicts; the zip passes AutoSeg's own import checks; the checkpoint holds what nnunetv2's
predictor reads; what nnU-Net cannot express is refused in one line. The reverse tables are checked
against nnunetv2's own files (the reference fixture): its plans and weights written back unchanged.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from Testing.engine.interop.nnunet_reference import ALL_MODELS, MODELS, PLAIN, RESENC, read_json

from autoseg.checkpoint import FINAL, save_checkpoint
from autoseg.cli import main
from autoseg.inference.model_folder import ModelFolder
from autoseg.inference.predictor import PredictionOptions, Predictor
from autoseg.interop.nnunet_checkpoint import _load
from autoseg.interop.nnunet_plans import NNUNET_ORIGIN, plans_from_nnunet
from autoseg.interop.nnunet_plans_writer import nnunet_plans_json
from autoseg.interop.nnunet_selection import (
    KEEP_LARGEST,
    SELECTED,
    is_nnunet_information,
    nnunet_recommendation,
    postprocessing_json_from_nnunet,
    postprocessing_json_to_nnunet,
)
from autoseg.interop.nnunet_weights import autoseg_state_dict, nnunet_state_dict
from autoseg.model_zip_layout import archive_problems
from autoseg.network import build_network
from autoseg.paths import DataRoots
from autoseg.plans import Plans, _resolve_inheritance

DATASET = "Dataset901_Tiny"
MODEL = "AutoSegTrainer__AutoSegPlans__{}"
EXPORTED = "nnUNetTrainer__AutoSegPlans__{}"
# (configuration, network, norm, nonlin): every network, norm and nonlinearity AutoSeg builds.
VARIANTS = {
    "plain_3d": ("3d_fullres", "PlainConvUNet", "InstanceNorm", "LeakyReLU"),
    "resenc_2d_batchnorm_relu": ("2d", "ResidualEncoderUNet", "BatchNorm", "ReLU"),
}


def build_autoseg_model(
    roots: DataRoots, results: Path, variant: str, folds: tuple[str, ...] = ("0", "1")
) -> Path:
    """A model folder as AutoSeg's training writes it, with small random networks (norm
    statistics randomised too, so BatchNorm buffers must travel)."""
    configuration, network, norm, nonlin = VARIANTS[variant]
    source = roots.preprocessed / DATASET
    folder = results / DATASET / MODEL.format(configuration)
    folder.mkdir(parents=True)
    plans = read_json(source / "AutoSegPlans.json")
    for entry in plans["configurations"].values():
        entry["architecture"].update(network=network, norm=norm, nonlin=nonlin)
        entry["architecture"]["features_per_stage"] = [4, 8, 8, 8][
            : len(entry["architecture"]["strides"])
        ]
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    for name in ("dataset.json", "dataset_fingerprint.json"):
        shutil.copyfile(source / name, folder / name)
    spec = Plans.load(folder / "plans.json").configuration(configuration).architecture
    for seed, fold in enumerate(folds):
        torch.manual_seed(seed)
        net = build_network(spec, 1, 3, deep_supervision=True)
        for name, value in net.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand_like(value) + 0.5 if "running_var" in name else value)
        state = {
            "network_weights": net.state_dict(),
            "configuration": configuration,
            "inference_allowed_mirroring_axes": list(range(len(spec.kernel_sizes[0]))),
        }
        save_checkpoint(folder / f"fold_{fold}" / FINAL, state)
    return folder


def _export(capsys, results: Path, output: Path, *extra: str) -> tuple[int, str]:
    argv = ["export_model", "-d", DATASET, "-o", str(output), "--results", str(results)]
    code = main([*argv, "--format", "nnunet", *extra])
    return code, capsys.readouterr().err


def _predict_all(folder: Path, images: list[Path], tmp: Path) -> list:
    # Mirroring is off to keep the test fast (the axes themselves are compared by the caller);
    # torch runs the network where a CPU runtime backend exists (its conversion takes seconds).
    torch_backend = (
        {"backend": "torch"} if "backend" in PredictionOptions.__dataclass_fields__ else {}
    )
    options = PredictionOptions(
        device="cpu", save_probabilities=True, precision="fp32", mirror_tta=False, **torch_backend
    )
    predictor = Predictor.from_model_folder(ModelFolder.open(folder), options)
    return [
        predictor.predict_files([image], tmp / image.name.replace("_0000", "")) for image in images
    ]


@pytest.mark.parametrize("variant", VARIANTS)
def test_an_exported_model_imported_back_predicts_identically(
    variant: str, tiny_preprocessed: DataRoots, tmp_path: Path, capsys
) -> None:
    configuration = VARIANTS[variant][0]
    model = build_autoseg_model(tiny_preprocessed, tmp_path / "results", variant)
    zip_path = tmp_path / "model.zip"
    assert _export(capsys, tmp_path / "results", zip_path, "-c", configuration) == (0, "")
    imported = tmp_path / "imported"
    code = main(["import_model", str(zip_path), "--results", str(imported)])
    assert (code, capsys.readouterr().err) == (0, "")
    back = imported / DATASET / EXPORTED.format(configuration)
    exported, original_model = ModelFolder.open(back), ModelFolder.open(model)
    assert exported.origin == NNUNET_ORIGIN
    assert exported.folds == ("0", "1")
    assert exported.mirror_axes == original_model.mirror_axes != ()
    assert exported.plans.configurations == original_model.plans.configurations
    images = sorted((tiny_preprocessed.raw / DATASET / "imagesTr").glob("*_0000.nii.gz"))[:1]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    original = _predict_all(model, images, tmp_path / "a")
    again = _predict_all(back, images, tmp_path / "b")
    for ours, theirs in zip(original, again, strict=True):
        np.testing.assert_array_equal(ours.segmentation, theirs.segmentation)
        np.testing.assert_allclose(ours.probabilities, theirs.probabilities, rtol=0, atol=1e-6)


def test_the_zip_passes_autosegs_import_checks_and_holds_nnunets_layout(
    tiny_preprocessed: DataRoots, tmp_path: Path, capsys
) -> None:
    build_autoseg_model(tiny_preprocessed, tmp_path / "results", "plain_3d")
    zip_path = tmp_path / "model.zip"
    assert _export(capsys, tmp_path / "results", zip_path, "-f", "1") == (0, "")
    with zipfile.ZipFile(zip_path) as archive:
        members = archive.infolist()
        names = sorted(m.filename for m in members)
        assert archive_problems(members, tmp_path / "anywhere") == ([], DATASET)
        plans = json.loads(archive.read(f"{DATASET}/{EXPORTED.format('3d_fullres')}/plans.json"))
    top = f"{DATASET}/{EXPORTED.format('3d_fullres')}"
    assert names == sorted(
        f"{top}/{name}"
        for name in ("plans.json", "dataset.json", "dataset_fingerprint.json", f"fold_1/{FINAL}")
    )
    assert not any(name.endswith(".pkl") for name in names)
    assert "format" not in plans  # nnU-Net's schema, not AutoSeg's
    architecture = plans["configurations"]["3d_fullres"]["architecture"]
    assert architecture["network_class_name"].endswith("unet.PlainConvUNet")
    assert architecture["arch_kwargs"]["norm_op"] == "torch.nn.modules.instancenorm.InstanceNorm3d"


def test_the_checkpoint_holds_what_nnunetv2_reads(
    tiny_preprocessed: DataRoots, tmp_path: Path, capsys
) -> None:
    build_autoseg_model(tiny_preprocessed, tmp_path / "results", "plain_3d", folds=("all",))
    zip_path = tmp_path / "model.zip"
    assert _export(capsys, tmp_path / "results", zip_path) == (0, "")
    top = f"{DATASET}/{EXPORTED.format('3d_fullres')}"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(tmp_path / "out")
    # Plain types only: loads with weights_only=True and no allow-list.
    state = torch.load(tmp_path / "out" / top / "fold_all" / FINAL, weights_only=True)
    assert state["trainer_name"] == "nnUNetTrainer"
    assert state["inference_allowed_mirroring_axes"] == (0, 1, 2)
    init = state["init_args"]
    assert (init["configuration"], init["fold"]) == ("3d_fullres", "all")
    assert init["plans"] == read_json(tmp_path / "out" / top / "plans.json")
    assert init["dataset_json"] == read_json(tmp_path / "out" / top / "dataset.json")
    weights = state["network_weights"]
    # nnU-Net's network holds each conv block's layers twice and the encoder inside its decoder.
    assert "encoder.stages.0.0.convs.0.conv.weight" in weights
    assert "encoder.stages.0.0.convs.0.all_modules.0.weight" in weights
    assert "decoder.encoder.stages.0.0.convs.0.all_modules.1.bias" in weights
    assert "decoder.transpconvs.0.weight" in weights


@pytest.mark.parametrize("model", ALL_MODELS)
def test_nnunets_own_weights_map_back_to_their_names(model: str) -> None:
    for checkpoint in sorted((MODELS / model).glob("fold_*/checkpoint_final.pth")):
        weights = _load(checkpoint)["network_weights"]
        back = nnunet_state_dict(autoseg_state_dict(weights, checkpoint), checkpoint)
        assert sorted(back) == sorted(weights)
        assert all(torch.equal(back[name], weights[name]) for name in weights)


@pytest.mark.parametrize("model", [PLAIN, RESENC])
def test_nnunets_own_plans_are_written_back_unchanged(model: str) -> None:
    original = read_json(MODELS / model / "plans.json")
    plans = plans_from_nnunet(original, "plans.json", "3d_fullres")
    written = nnunet_plans_json(Plans(**{**plans.__dict__, "extra": {}}), "plans.json")
    for name in original["configurations"]:
        resolved = _resolve_inheritance(name, original["configurations"], "plans.json")
        resolved.pop("inherits_from", None)
        assert written["configurations"][name] == resolved
    assert {k: v for k, v in written.items() if k != "configurations"} == {
        k: v for k, v in original.items() if k != "configurations"
    }


def test_an_nnunet_model_is_passed_on_as_it_is(tmp_path: Path, capsys) -> None:
    shutil.copytree(MODELS / PLAIN, tmp_path / "results" / "Dataset990_AutoSegInterop" / PLAIN)
    zip_path = tmp_path / "model.zip"
    argv = ["-d", "Dataset990_AutoSegInterop", "-tr", "nnUNetTrainer", "-p", "nnUNetPlans"]
    where = ["-o", str(zip_path), "--results", str(tmp_path / "results"), "--format", "nnunet"]
    code = main(["export_model", *argv, *where])
    assert (code, capsys.readouterr().err) == (0, "")
    with zipfile.ZipFile(zip_path) as archive:
        top = f"Dataset990_AutoSegInterop/{PLAIN}"
        assert (
            archive.read(f"{top}/fold_0/{FINAL}")
            == (MODELS / PLAIN / "fold_0" / FINAL).read_bytes()
        )
        assert archive.read(f"{top}/plans.json") == (MODELS / PLAIN / "plans.json").read_bytes()


def _one_line_refusal(capsys, results: Path, output: Path, *extra: str) -> str:
    code, err = _export(capsys, results, output, *extra)
    assert code != 0
    assert err.count("\n") == 1, err
    assert not output.exists()
    return err


def _edit_plans(folder: Path, key: str, value: object) -> None:
    plans = read_json(folder / "plans.json")
    for entry in plans["configurations"].values():
        if key == "network":
            entry["architecture"]["network"] = value
        else:
            entry[key] = value
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")


def test_a_normalization_nnunet_lacks_is_refused_by_name(
    tiny_preprocessed: DataRoots, tmp_path: Path, capsys
) -> None:
    folder = build_autoseg_model(tiny_preprocessed, tmp_path / "results", "plain_3d")
    _edit_plans(folder, "normalization_schemes", ["PercentileClip"])
    err = _one_line_refusal(capsys, tmp_path / "results", tmp_path / "model.zip")
    assert "normalization_schemes = 'PercentileClip'" in err
    assert "--format autoseg" in err


def test_a_network_nnunet_lacks_is_refused_by_name(
    tiny_preprocessed: DataRoots, tmp_path: Path, capsys
) -> None:
    folder = build_autoseg_model(tiny_preprocessed, tmp_path / "results", "plain_3d")
    _edit_plans(folder, "network", "SwinUNETR")
    err = _one_line_refusal(capsys, tmp_path / "results", tmp_path / "model.zip")
    assert "SwinUNETR" in err


def test_weights_of_another_network_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"'decoder\.attention\.weight'"):
        nnunet_state_dict({"decoder.attention.weight": torch.zeros(1)}, tmp_path / "x.pth")


def test_export_rules_are_shared_with_autosegs_zip(
    tiny_preprocessed: DataRoots, tmp_path: Path, capsys
) -> None:
    build_autoseg_model(tiny_preprocessed, tmp_path / "results", "plain_3d")
    latest = _one_line_refusal(
        capsys, tmp_path / "results", tmp_path / "a.zip", "-chk", "checkpoint_latest.pth"
    )
    assert "only resumes training" in latest
    missing = _one_line_refusal(capsys, tmp_path / "results", tmp_path / "b.zip", "-f", "3")
    assert "no fold(s) 3" in missing
    validation = _one_line_refusal(
        capsys, tmp_path / "results", tmp_path / "d.zip", "--include_validation"
    )
    assert "--include_validation cannot be combined with --format nnunet" in validation
    (tmp_path / "c.zip").write_bytes(b"mine")
    assert "already exists" in _export(capsys, tmp_path / "results", tmp_path / "c.zip")[1]
    assert (tmp_path / "c.zip").read_bytes() == b"mine"


def _autoseg_selection(dataset: Path) -> str:
    """An AutoSeg find_best_configuration result choosing the ensemble of both models, with
    "keep the largest foreground component" (the files as AutoSeg's selection writes them)."""
    models = [MODEL.format("3d_fullres"), MODEL.format("2d")]
    ensemble = "___".join(["ensemble", *models, "0_1"])
    rules = {"rules": [{"kind": "largest_foreground", "region": None}], "before": {}, "after": {}}
    (dataset / "ensembles" / ensemble).mkdir(parents=True)
    (dataset / "ensembles" / ensemble / "postprocessing.json").write_text(json.dumps(rules))
    entries = [
        {"configuration": c, "trainer": "AutoSegTrainer", "plans": "AutoSegPlans", "folder": m}
        for c, m in zip(("3d_fullres", "2d"), models, strict=True)
    ]
    information = {
        "dataset": DATASET,
        "folds": [0, 1],
        "considered_models": entries,
        "ensembling_allowed": True,
        "all_results": {models[0]: 0.8, models[1]: 0.7, ensemble: 0.9},
        "best_model_or_ensemble": {
            "name": ensemble,
            "folder": f"ensembles/{ensemble}",
            "selected_models": entries,
            "result_on_crossval_pre_pp": 0.9,
            "result_on_crossval_post_pp": 0.91,
            "postprocessing_file": f"ensembles/{ensemble}/postprocessing.json",
        },
    }
    (dataset / "inference_information.json").write_text(json.dumps(information))
    return ensemble.replace("AutoSegTrainer", "nnUNetTrainer")


def test_the_model_selection_is_exported_in_nnunets_schema(
    tiny_preprocessed: DataRoots, tmp_path: Path, capsys
) -> None:
    for variant in VARIANTS:
        build_autoseg_model(tiny_preprocessed, tmp_path / "results", variant)
    ensemble = _autoseg_selection(tmp_path / "results" / DATASET)
    zip_path = tmp_path / "model.zip"
    assert _export(capsys, tmp_path / "results", zip_path) == (0, "")
    code = main(["import_model", str(zip_path), "--results", str(tmp_path / "imported")])
    assert (code, capsys.readouterr().err) == (0, "")
    dataset = tmp_path / "imported" / DATASET
    postprocessing = read_json(dataset / "ensembles" / ensemble / "postprocessing.json")
    assert postprocessing["postprocessing_fns"] == [KEEP_LARGEST]
    assert postprocessing["postprocessing_kwargs"] == [{"labels_or_regions": [1, 2]}]
    information = read_json(dataset / "inference_information.json")
    assert is_nnunet_information(information)
    assert information["best_model_or_ensemble"][SELECTED] == [
        {"configuration": c, "plans_identifier": "AutoSegPlans", "trainer": "nnUNetTrainer"}
        for c in ("3d_fullres", "2d")
    ]
    # AutoSeg's reader of nnU-Net's selection finds both models and the post-processing.
    name, models, folds, rules = nnunet_recommendation(
        information, dataset, dataset / "inference_information.json"
    )
    assert [m.name for m in models] == [EXPORTED.format(c) for c in ("3d_fullres", "2d")]
    assert (name, folds) == (ensemble.removesuffix("___0_1"), ("0", "1"))
    assert rules == dataset / "ensembles" / ensemble / "postprocessing.json"


def test_postprocessing_rules_translate_both_ways() -> None:
    rules = [
        {"kind": "largest_foreground", "region": None},
        {"kind": "largest_per_region", "region": [2]},
        {"kind": "largest_per_region", "region": [1, 2]},
    ]
    nnunet = postprocessing_json_to_nnunet({"rules": rules, "before": {}, "after": {}}, (1, 2))
    assert nnunet["postprocessing_fns"] == [KEEP_LARGEST] * 3
    assert [k["labels_or_regions"] for k in nnunet["postprocessing_kwargs"]] == [[1, 2], 2, [1, 2]]
    back = postprocessing_json_from_nnunet(nnunet, "postprocessing.json")["rules"]
    # nnU-Net has no "whole foreground" rule of its own: it is the region of every label.
    assert [rule["region"] for rule in back] == [[1, 2], [2], [1, 2]]
