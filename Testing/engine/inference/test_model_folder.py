"""Model folders: fold detection, validation errors (one clear line each) and loading networks."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from autoseg.checkpoint import BEST, FINAL, save_checkpoint
from autoseg.errors import AutoSegError
from autoseg.inference.model_folder import ModelFolder
from autoseg.network import build_network
from autoseg.paths import DataRoots
from autoseg.plans import Plans

DATASET = "Dataset901_Tiny"
SMALL_FEATURES = (4, 8, 8, 8)


def build_model_folder(
    roots: DataRoots,
    target: Path,
    configuration: str = "3d_fullres",
    folds: Sequence[int | str] = (0, 1),
    *,
    checkpoint_configuration: str | None = None,
) -> Path:
    """A model folder as training writes it, with tiny random networks instead of trained ones."""
    source = roots.preprocessed / DATASET
    folder = target / f"AutoSegTrainer__AutoSegPlans__{configuration}"
    folder.mkdir(parents=True)
    plans = json.loads((source / "AutoSegPlans.json").read_text(encoding="utf-8"))
    for entry in plans["configurations"].values():
        entry["architecture"]["features_per_stage"] = list(SMALL_FEATURES)
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    for name in ("dataset.json", "dataset_fingerprint.json"):
        shutil.copyfile(source / name, folder / name)
    spec = Plans.load(folder / "plans.json").configuration(configuration).architecture
    axes = list(range(len(spec.kernel_sizes[0])))
    for seed, fold in enumerate(folds):
        torch.manual_seed(seed)
        network = build_network(spec, 1, 3, deep_supervision=True)
        state = {
            "network_weights": network.state_dict(),
            "configuration": checkpoint_configuration or configuration,
            "inference_allowed_mirroring_axes": axes,
            "settings": {},
        }
        save_checkpoint(folder / f"fold_{fold}" / FINAL, state)
    return folder


@pytest.fixture
def folder(tiny_preprocessed: DataRoots, tmp_path: Path) -> Path:
    return build_model_folder(tiny_preprocessed, tmp_path)


def _one_line_error(path: Path, **kwargs) -> str:
    with pytest.raises(AutoSegError) as caught:
        ModelFolder.open(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_open_detects_numbered_folds_with_the_checkpoint(folder: Path) -> None:
    (folder / "fold_4").mkdir()  # no checkpoint: not a usable fold
    shutil.copytree(folder / "fold_0", folder / "fold_all")
    shutil.copytree(folder / "fold_0", folder / "fold_10")
    model = ModelFolder.open(folder)
    assert model.folds == ("0", "1", "10")  # numeric order, fold_all only when asked
    assert model.configuration == "3d_fullres"
    assert model.checkpoint_name == FINAL
    assert model.mirror_axes == (0, 1, 2)
    assert model.num_input_channels == 1
    assert model.num_classes == 3
    assert tuple(model.dataset.labels.all_labels) == (0, 1, 2)
    assert ModelFolder.open(folder, folds=["all"]).folds == ("all",)
    assert ModelFolder.open(folder, folds=[1, "0", 1]).folds == ("1", "0")


def test_a_model_trained_only_on_fold_all_uses_it(folder: Path) -> None:
    (folder / "fold_0").rename(folder / "fold_all")
    shutil.rmtree(folder / "fold_1")
    assert ModelFolder.open(folder).folds == ("all",)


def test_open_finds_another_checkpoint(folder: Path) -> None:
    (folder / "fold_1" / FINAL).rename(folder / "fold_1" / BEST)
    assert ModelFolder.open(folder).folds == ("0",)
    assert ModelFolder.open(folder, checkpoint=BEST).folds == ("1",)


def test_missing_plans_is_one_clear_line(folder: Path) -> None:
    (folder / "plans.json").unlink()
    message = _one_line_error(folder)
    assert str(folder) in message
    assert "plans.json is missing" in message


def test_missing_dataset_json_is_one_clear_line(folder: Path) -> None:
    (folder / "dataset.json").unlink()
    assert "dataset.json is missing" in _one_line_error(folder)


def test_no_trained_fold_is_one_clear_line(folder: Path) -> None:
    for fold in ("fold_0", "fold_1"):
        shutil.rmtree(folder / fold)
    message = _one_line_error(folder)
    assert str(folder) in message
    assert f"no fold_<k> folder holds {FINAL}" in message


def test_missing_checkpoint_of_an_asked_fold_is_one_clear_line(folder: Path) -> None:
    message = _one_line_error(folder, folds=[0, 3])
    assert str(folder / "fold_3") in message
    assert f"{FINAL} is missing" in message
    assert "fold 3" in message
    assert "fold 'x'" in _one_line_error(folder, folds=["x"])
    assert "no folds" in _one_line_error(folder, folds=[])


def test_checkpoint_of_another_configuration_is_one_clear_line(
    tiny_preprocessed: DataRoots, tmp_path: Path
) -> None:
    folder = build_model_folder(
        tiny_preprocessed, tmp_path, folds=(0,), checkpoint_configuration="2d"
    )
    message = _one_line_error(folder)
    assert str(folder / "fold_0" / FINAL) in message
    assert "'2d'" in message
    assert "'3d_fullres'" in message


def test_configuration_missing_from_plans_is_one_clear_line(folder: Path) -> None:
    renamed = folder.with_name("AutoSegTrainer__AutoSegPlans__3d_lowres")
    folder.rename(renamed)
    message = _one_line_error(renamed)
    assert "no configuration '3d_lowres'" in message
    assert "3d_fullres, 2d" in message


def test_badly_named_or_absent_folder_is_one_clear_line(folder: Path) -> None:
    renamed = folder.with_name("my_model")
    folder.rename(renamed)
    assert "<trainer>__<plans>__<configuration>" in _one_line_error(renamed)
    assert "model folder not found" in _one_line_error(folder)


def test_load_fold_networks_restores_the_weights(folder: Path) -> None:
    model = ModelFolder.open(folder)
    networks = model.load_fold_networks("cpu")
    assert len(networks) == 2
    saved = torch.load(folder / "fold_1" / FINAL, weights_only=True)["network_weights"]
    for name, value in networks[1].state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    network = networks[0]
    assert not network.training
    assert network.deep_supervision is False
    with torch.no_grad():
        out = network(torch.zeros(1, 1, 12, 32, 32))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, 3, 12, 32, 32)
    assert model.describe()["folds"] == ["0", "1"]


def test_weights_that_do_not_fit_the_plans_are_one_clear_line(folder: Path) -> None:
    plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    plans["configurations"]["3d_fullres"]["architecture"]["features_per_stage"] = [2, 4, 4, 4]
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    model = ModelFolder.open(folder)
    with pytest.raises(AutoSegError) as caught:
        model.load_fold_networks()
    message = str(caught.value)
    assert "\n" not in message
    assert str(folder / "fold_0" / FINAL) in message
    assert "do not fit the network of plans.json" in message


def test_a_kept_version_opens_as_a_model_with_its_own_folds(folder: Path) -> None:
    """versions/<n> takes its configuration from the model folder above it; the model folder's
    own fold detection never mistakes versions/ for a fold."""
    version = folder / "versions" / "1"
    version.mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        shutil.copyfile(folder / name, version / name)
    shutil.copytree(folder / "fold_1", version / "fold_1")
    kept = ModelFolder.open(version)
    assert kept.configuration == "3d_fullres"
    assert kept.folds == ("1",)
    assert kept.path == version
    assert ModelFolder.open(folder).folds == ("0", "1")


def test_a_number_outside_versions_is_not_a_model_folder(folder: Path) -> None:
    stray = folder.parent / "7"
    shutil.copytree(folder, stray)
    assert "<trainer>__<plans>__<configuration>" in _one_line_error(stray)
