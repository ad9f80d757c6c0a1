"""``autoseg predict``: end to end on tiny random-weight model folders, and one clear line per mistake."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from autoseg.checkpoint import FINAL, save_checkpoint
from autoseg.cli import main
from autoseg.network import build_network
from autoseg.paths import DataRoots
from autoseg.plans import Plans

DATASET = "Dataset901_Tiny"
FAST = ["-device", "cpu", "--disable_tta", "--progress", "none"]


def build_model(
    roots: DataRoots,
    configuration: str = "3d_fullres",
    folds: Sequence[int] = (0, 1),
    channels: int = 1,
) -> Path:
    """A model folder in ``roots.results`` as training writes it, with tiny random networks."""
    source = roots.preprocessed / DATASET
    folder = roots.results / DATASET / f"AutoSegTrainer__AutoSegPlans__{configuration}"
    folder.mkdir(parents=True)
    plans = json.loads((source / "AutoSegPlans.json").read_text(encoding="utf-8"))
    configs = plans["configurations"]
    for entry in configs.values():
        entry["architecture"]["features_per_stage"] = [4, 8, 8, 8]
    configs["3d_lowres"] = {**configs["3d_fullres"], "next_stage": "3d_cascade_fullres"}
    configs["3d_cascade_fullres"] = {**configs["3d_fullres"], "previous_stage": "3d_lowres"}
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    dataset = json.loads((source / "dataset.json").read_text(encoding="utf-8"))
    dataset["channel_names"] = {str(i): f"CT{i}" for i in range(channels)}
    (folder / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")
    config = Plans.load(folder / "plans.json").configuration(configuration)
    in_channels = channels + (2 if config.previous_stage else 0)  # one-hot of labels 1 and 2
    for fold in folds:
        torch.manual_seed(fold)
        network = build_network(config.architecture, in_channels, 3, deep_supervision=True)
        state = {
            "network_weights": network.state_dict(),
            "configuration": configuration,
            "inference_allowed_mirroring_axes": [0, 1, 2],
        }
        save_checkpoint(folder / f"fold_{fold}" / FINAL, state)
    return folder


@pytest.fixture
def roots(tiny_preprocessed: DataRoots, tmp_path: Path) -> DataRoots:
    """The tiny dataset's plans with a private results folder."""
    return DataRoots(tiny_preprocessed.raw, tiny_preprocessed.preprocessed, tmp_path / "results")


def write_case(folder: Path, case_id: str, channel: int = 0, seed: int = 0) -> Path:
    """An oblique, anisotropic CT-like image of 6x20x24 voxels (SimpleITK's array order)."""
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(60.0, 30.0, size=(6, 20, 24)).astype(np.float32))
    image.SetSpacing((0.7, 1.0, 2.5))
    image.SetOrigin((10.5, -3.25, 7.0 + seed))
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    image.SetDirection((c, -s, 0.0, s * 0.8, c * 0.8, 0.6, -s * 0.6, -c * 0.6, 0.8))
    path = folder / f"{case_id}_{channel:04d}.nii.gz"
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def predict(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predicts_every_case_with_its_input_geometry(roots, tmp_path, capsys) -> None:
    model = build_model(roots)
    inputs = tmp_path / "in"
    for index in range(2):
        write_case(inputs, f"case_{index}", seed=index)
    out = tmp_path / "out"
    code, stdout, err = predict(
        capsys, "-i", str(inputs), "-o", str(out), "-m", str(model), "--save_probabilities", *FAST
    )
    assert (code, err) == (0, "")
    assert "Predicted 2 case(s)" in stdout
    for index in range(2):
        source = sitk.ReadImage(str(inputs / f"case_{index}_0000.nii.gz"))
        written = sitk.ReadImage(str(out / f"case_{index}.nii.gz"))
        assert written.GetSize() == source.GetSize()
        np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)
        assert (out / f"case_{index}.npz").is_file()
    assert (
        json.loads((out / "dataset.json").read_text())["labels"]
        == json.loads((model / "dataset.json").read_text())["labels"]
    )
    assert "configurations" in json.loads((out / "plans.json").read_text())
    settings = json.loads((out / "predict_args.json").read_text())
    assert settings["folds"] == ["0", "1"]
    assert settings["mirror_tta"] is False
    assert settings["step"] == 0.5
    assert settings["device"] == "cpu"
    assert settings["cases"] == ["case_0", "case_1"]


def test_continue_prediction_skips_finished_cases(roots, tmp_path, capsys) -> None:
    model = build_model(roots, folds=(0,))
    inputs, out = tmp_path / "in", tmp_path / "out"
    for index in range(2):
        write_case(inputs, f"case_{index}", seed=index)
    args = ["-i", str(inputs), "-o", str(out), "-m", str(model), *FAST]
    assert predict(capsys, *args)[0] == 0
    (out / "case_0.nii.gz").write_bytes(b"marker")  # a "finished" case must not be touched
    (out / "case_1.nii.gz").unlink()
    code, stdout, _ = predict(capsys, *args, "--continue_prediction")
    assert code == 0
    assert "Predicted 1 case(s)" in stdout
    assert "skipped 1" in stdout
    assert (out / "case_0.nii.gz").read_bytes() == b"marker"
    assert sitk.ReadImage(str(out / "case_1.nii.gz")).GetSize() == (24, 20, 6)
    assert predict(capsys, *args)[0] == 0  # without the flag everything is predicted again
    assert (out / "case_0.nii.gz").read_bytes() != b"marker"


def test_parts_split_the_cases(roots, tmp_path, capsys) -> None:
    model = build_model(roots, folds=(0,))
    inputs = tmp_path / "in"
    for index in range(3):
        write_case(inputs, f"case_{index}", seed=index)
    for part, expected in ((0, ["case_0", "case_2"]), (1, ["case_1"])):
        out = tmp_path / f"part{part}"
        parts = ["-num_parts", "2", "-part_id", str(part)]
        assert (
            predict(capsys, "-i", str(inputs), "-o", str(out), "-m", str(model), *parts, *FAST)[0]
            == 0
        )
        assert sorted(p.name.removesuffix(".nii.gz") for p in out.glob("*.nii.gz")) == expected


def test_dataset_and_configuration_find_the_same_model_as_m(roots, tmp_path, capsys) -> None:
    model = build_model(roots)
    inputs = tmp_path / "in"
    write_case(inputs, "case_0")
    by_folder = ["-m", str(model)]
    by_name = [
        "-d",
        "901",
        "-c",
        "3d_fullres",
        "-tr",
        "nnUNetTrainer",
        "--results",
        str(roots.results),
    ]
    arrays = []
    for index, how in enumerate((by_folder, by_name)):
        out = tmp_path / f"out{index}"
        assert predict(capsys, "-i", str(inputs), "-o", str(out), *how, *FAST, "-f", "1")[0] == 0
        arrays.append(sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case_0.nii.gz"))))
        assert json.loads((out / "predict_args.json").read_text())["model_folder"] == str(model)
    np.testing.assert_array_equal(arrays[0], arrays[1])


def test_fast_mode_uses_one_fold_no_tta_and_a_larger_step(roots, tmp_path, capsys) -> None:
    model = build_model(roots, folds=(1, 3))
    write_case(tmp_path / "in", "case_0")
    args = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(model)]
    assert predict(capsys, *args, "--fast", "-device", "cpu", "--progress", "none")[0] == 0
    settings = json.loads((tmp_path / "out" / "predict_args.json").read_text())
    assert (settings["folds"], settings["mirror_tta"], settings["step"]) == (["1"], False, 0.75)


def test_cascade_predicts_the_lowres_stage_first(roots, tmp_path, capsys) -> None:
    build_model(roots, "3d_lowres", folds=(0,))
    cascade = build_model(roots, "3d_cascade_fullres", folds=(0,))
    write_case(tmp_path / "in", "case_0")
    out = tmp_path / "out"
    args = ["-i", str(tmp_path / "in"), "-o", str(out), *FAST]
    assert predict(capsys, *args, "-m", str(cascade))[0] == 0
    assert (out / ".lowres" / "case_0.nii.gz").is_file()
    assert (out / "case_0.nii.gz").is_file()
    settings = json.loads((out / "predict_args.json").read_text())
    assert settings["previous_stage"] == str(out / ".lowres")
    given = tmp_path / "given"
    lowres = ["-prev_stage_predictions", str(out / ".lowres")]
    assert predict(capsys, *args[:3], str(given), *FAST, "-m", str(cascade), *lowres)[0] == 0
    assert not (given / ".lowres").exists()
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(given / "case_0.nii.gz"))),
        sitk.GetArrayFromImage(sitk.ReadImage(str(out / "case_0.nii.gz"))),
    )


def _two_channel_inputs(folder: Path, names: Sequence[tuple[str, int]]) -> None:
    for case_id, channel in names:
        write_case(folder, case_id, channel)


BAD_INPUTS: dict[str, tuple[list[tuple[str, int]], str]] = {
    "wrong channel count": (
        [("a", 0), ("a", 1), ("a", 2)],
        "a_0002.nii.gz: channel 0002 is beyond",
    ),
    "missing channel": ([("a", 0)], "a_0001.nii.gz: missing; case a needs the model's 2 channel"),
    "wrong ending": ([("a", 0), ("a", 1)], "b_0000.nii: does not end with the model's file ending"),
}


@pytest.mark.parametrize("problem", sorted(BAD_INPUTS))
def test_bad_input_folders_are_one_clear_line(roots, tmp_path, capsys, problem: str) -> None:
    model = build_model(roots, folds=(0,), channels=2)
    names, message = BAD_INPUTS[problem]
    _two_channel_inputs(tmp_path / "in", names)
    if problem == "wrong ending":
        shutil.copyfile(tmp_path / "in" / "a_0000.nii.gz", tmp_path / "in" / "b_0000.nii")
    code, _, err = predict(
        capsys, "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-m", str(model), *FAST
    )
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert message in err
    assert "Fix:" in err
    assert not (tmp_path / "o").exists()  # nothing is written before the inputs are checked


# mistake -> (arguments after -i IN -o OUT with {model}, {results} and {tmp} filled in, message)
BAD_CALLS: dict[str, tuple[list[str], str]] = {
    "model folder incomplete": (["-m", "{model}"], "plans.json is missing"),
    "missing fold": (["-m", "{model}", "-f", "3"], "fold_3"),
    "output is input": (["-m", "{model}", "-o", "{tmp}/in/."], "is the input folder"),
    "no model": ([], "no model given"),
    "m and d": (["-m", "{model}", "-d", "901"], "replaces -d/-c/-tr/-p"),
    "unknown configuration": (
        ["-d", "901", "-c", "2d", "--results", "{results}"],
        "trained here: AutoSegTrainer__AutoSegPlans__3d_fullres",
    ),
    "bad part": (["-m", "{model}", "-num_parts", "2", "-part_id", "2"], "part_id must be"),
    "not a cascade": (["-m", "{model}", "-prev_stage_predictions", "{tmp}"], "not a cascade stage"),
}


@pytest.mark.parametrize("mistake", sorted(BAD_CALLS))
def test_bad_calls_are_one_clear_line(roots, tmp_path, capsys, mistake: str) -> None:
    model = build_model(roots, folds=(0,))
    write_case(tmp_path / "in", "case_0")
    if mistake == "model folder incomplete":
        (model / "plans.json").unlink()
    extra, message = BAD_CALLS[mistake]
    fill = {"model": str(model), "results": str(roots.results), "tmp": str(tmp_path)}
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")]
    code, _, err = predict(capsys, *argv, *(a.format(**fill) for a in extra), *FAST)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err


def test_cascade_without_its_lowres_model_is_one_clear_line(roots, tmp_path, capsys) -> None:
    cascade = build_model(roots, "3d_cascade_fullres", folds=(0,))
    write_case(tmp_path / "in", "case_0")
    argv: list[Any] = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(cascade)]
    code, _, err = predict(capsys, *argv, *FAST)
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "train 3d_lowres" in err
