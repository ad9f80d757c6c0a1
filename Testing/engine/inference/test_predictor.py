"""Predictor: fold ensembling, geometry round trips, 2D and cascade models, options and precision."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from autoseg.checkpoint import FINAL, save_checkpoint
from autoseg.errors import AutoSegError
from autoseg.inference import precision
from autoseg.inference.model_folder import ModelFolder
from autoseg.inference.predictor import PredictionOptions, Predictor
from autoseg.network import build_network
from autoseg.paths import DataRoots
from autoseg.plans import Plans

DATASET = "Dataset901_Tiny"
SMALL_FEATURES = [4, 8, 8, 8]
PlansEdit = Callable[[dict[str, Any]], None]


def build_model_folder(
    roots: DataRoots,
    target: Path,
    configuration: str = "3d_fullres",
    folds: Sequence[int] = (0, 1),
    edit_plans: PlansEdit | None = None,
) -> Path:
    """A model folder as training writes it, with tiny random networks instead of trained ones."""
    source = roots.preprocessed / DATASET
    folder = target / f"AutoSegTrainer__AutoSegPlans__{configuration}"
    folder.mkdir(parents=True)
    plans = json.loads((source / "AutoSegPlans.json").read_text(encoding="utf-8"))
    for entry in plans["configurations"].values():
        entry["architecture"]["features_per_stage"] = SMALL_FEATURES
    if edit_plans is not None:
        edit_plans(plans)
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    shutil.copyfile(source / "dataset.json", folder / "dataset.json")
    config = Plans.load(folder / "plans.json").configuration(configuration)
    in_channels = 3 if config.previous_stage else 1  # + one-hot of labels 1 and 2 in a cascade
    for fold in folds:
        torch.manual_seed(fold)
        network = build_network(config.architecture, in_channels, 3, deep_supervision=True)
        state = {
            "network_weights": network.state_dict(),
            "configuration": configuration,
            "inference_allowed_mirroring_axes": list(range(len(config.patch_size))),
            "settings": {},
        }
        save_checkpoint(folder / f"fold_{fold}" / FINAL, state)
    return folder


def _transposed(order: Sequence[int]) -> PlansEdit:
    def edit(plans: dict[str, Any]) -> None:
        plans["transpose_forward"] = list(order)
        plans["transpose_backward"] = np.argsort(order).tolist()

    return edit


def _with_cascade(plans: dict[str, Any]) -> None:
    configs = plans["configurations"]
    configs["3d_lowres"] = {**configs["3d_fullres"], "next_stage": "3d_cascade_fullres"}
    configs["3d_cascade_fullres"] = {**configs["3d_fullres"], "previous_stage": "3d_lowres"}


def _predictor(folder: Path, folds=None, **options: Any) -> Predictor:
    settings = {"device": "cpu", "mirror_tta": False, "precision": "fp32", **options}
    settings.setdefault("backend", "torch")  # these tests look at the torch module itself
    return Predictor.from_model_folder(folder, PredictionOptions(**settings), folds)


def _image(shape=(10, 28, 30), seed: int = 0) -> np.ndarray:
    """A one-channel CT-like image with a zero border on one side (so cropping matters)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(60.0, 30.0, size=(1, *shape)).astype(np.float32)
    image[:, :, :3] = 0.0
    return image


@pytest.fixture
def folder(tiny_preprocessed: DataRoots, tmp_path: Path) -> Path:
    return build_model_folder(tiny_preprocessed, tmp_path)


def test_folds_are_ensembled_by_averaging_logits(folder: Path) -> None:
    data = np.random.default_rng(1).normal(size=(1, 12, 32, 32)).astype(np.float32)
    both = _predictor(folder).predict_preprocessed(data)
    first = _predictor(folder, folds=[0]).predict_preprocessed(data)
    second = _predictor(folder, folds=[1]).predict_preprocessed(data)
    assert not torch.allclose(first, second)  # the folds really differ
    assert both.dtype == torch.float32
    assert both.device.type == "cpu"
    torch.testing.assert_close(both, (first + second) / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1)])
def test_array_prediction_returns_the_input_grid_and_valid_probabilities(
    tiny_preprocessed: DataRoots, tmp_path: Path, order: tuple[int, ...]
) -> None:
    folder = build_model_folder(tiny_preprocessed, tmp_path, edit_plans=_transposed(order))
    images = _image()
    spacing = (2.5, 0.7, 1.0)  # anisotropic: resampled to 1 mm and back
    predictor = _predictor(folder, folds=[0], save_probabilities=True)
    result = predictor.predict_array(images, spacing)
    assert result.segmentation.shape == images.shape[1:]
    assert result.segmentation.dtype == np.uint8
    assert result.properties["spacing"] == list(spacing)
    assert result.properties["transpose_forward"] == list(order)
    probabilities = result.probabilities
    assert probabilities is not None
    assert probabilities.shape == (3, *images.shape[1:])
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert probabilities.min() >= 0.0
    np.testing.assert_array_equal(np.argmax(probabilities, axis=0), result.segmentation)
    assert (result.segmentation[:, :3] == 0).all()  # outside the crop: background


def _write_oblique(path: Path, array: np.ndarray) -> sitk.Image:
    """Write ``(x, y, z)`` with anisotropic spacing, a shifted origin and a rotated direction."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 1.0, 2.5))
    image.SetOrigin((10.5, -3.25, 7.0))
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    image.SetDirection((c, -s, 0.0, s * 0.8, c * 0.8, 0.6, -s * 0.6, -c * 0.6, 0.8))
    sitk.WriteImage(image, str(path))
    return image


def test_file_prediction_keeps_the_exact_geometry(folder: Path, tmp_path: Path) -> None:
    _write_oblique(tmp_path / "case_000_0000.nii.gz", _image(shape=(4, 20, 24))[0])
    source = sitk.ReadImage(str(tmp_path / "case_000_0000.nii.gz"))  # as stored in the file
    output = tmp_path / "out" / "case_000.nii.gz"
    predictor = _predictor(folder, folds=[0], save_probabilities=True)
    result = predictor.predict_files([tmp_path / "case_000_0000.nii.gz"], output)
    written = sitk.ReadImage(str(output))
    assert written.GetSize() == source.GetSize()
    np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)
    assert abs(written.GetDirection()[1]) > 0.4  # the oblique direction survived
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), result.segmentation)
    again = predictor.predict_array(sitk.GetArrayFromImage(source)[None], (2.5, 1.0, 0.7))
    np.testing.assert_array_equal(again.segmentation, result.segmentation)
    with np.load(tmp_path / "out" / "case_000.npz", allow_pickle=False) as npz:
        assert npz["probabilities"].shape == (3, *result.segmentation.shape)
    saved = json.loads((tmp_path / "out" / "case_000.json").read_text(encoding="utf-8"))
    assert saved["geometry"]["direction"] == pytest.approx(source.GetDirection(), abs=1e-6)


def test_2d_model_predicts_3d_input_slice_by_slice(
    tiny_preprocessed: DataRoots, tmp_path: Path
) -> None:
    folder = build_model_folder(tiny_preprocessed, tmp_path, configuration="2d", folds=(0,))
    predictor = _predictor(folder, save_probabilities=True, tile_batch_size=8)
    data = np.random.default_rng(2).normal(size=(1, 4, 32, 32)).astype(np.float32)
    logits = predictor.predict_preprocessed(data)
    network = predictor.networks[0]
    assert isinstance(network, nn.Module)
    with torch.no_grad():
        expected = network(torch.from_numpy(data).permute(1, 0, 2, 3))  # slices as a batch
    torch.testing.assert_close(logits, expected.permute(1, 0, 2, 3), rtol=1e-4, atol=1e-4)
    images = _image(shape=(5, 28, 30))
    result = predictor.predict_array(images, (3.0, 1.0, 1.0))
    assert result.segmentation.shape == images.shape[1:]
    assert result.probabilities is not None
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-5)


def test_cascade_stage_needs_and_uses_the_previous_segmentation(
    tiny_preprocessed: DataRoots, tmp_path: Path
) -> None:
    folder = build_model_folder(
        tiny_preprocessed, tmp_path, "3d_cascade_fullres", (0,), _with_cascade
    )
    predictor = _predictor(folder, save_probabilities=True)
    images = _image(shape=(8, 20, 24))
    with pytest.raises(AutoSegError, match="cascade stage after '3d_lowres'"):
        predictor.predict_array(images, (1.0, 1.0, 1.0))
    empty = np.zeros(images.shape[1:], dtype=np.uint8)
    full = np.full(images.shape[1:], 2, dtype=np.uint8)
    a = predictor.predict_array(images, (1.0, 1.0, 1.0), previous_segmentation=empty)
    b = predictor.predict_array(images, (1.0, 1.0, 1.0), previous_segmentation=full)
    assert a.segmentation.shape == images.shape[1:]
    assert a.probabilities is not None
    assert b.probabilities is not None
    assert not np.allclose(a.probabilities, b.probabilities)


def test_bad_inputs_are_clear_errors(folder: Path, tmp_path: Path) -> None:
    predictor = _predictor(folder, folds=[0])
    with pytest.raises(AutoSegError, match=r"needs \(1, x, y, z\)"):
        predictor.predict_array(np.zeros((2, 4, 4, 4), np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(AutoSegError, match=r"needs \(1, x, y, z\)"):
        predictor.predict_array(np.zeros((4, 4, 4), np.float32), (1.0, 1.0, 1.0))
    with pytest.raises(AutoSegError, match="spacing"):
        predictor.predict_array(_image(), (1.0, 1.0))
    with pytest.raises(AutoSegError, match="only for cascade stages"):
        predictor.predict_array(_image(), (1.0,) * 3, previous_segmentation=np.zeros((10, 28, 30)))
    with pytest.raises(AutoSegError, match="2 input file"):
        predictor.predict_files(
            [tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"], tmp_path / "o.nii.gz"
        )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"step": 0.0}, "step"),
        ({"step": 1.5}, "step"),
        ({"tile_batch_size": 0}, "tile_batch_size"),
        ({"precision": "fp16"}, "precision 'fp16'"),
    ],
)
def test_invalid_options_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(AutoSegError, match=message):
        PredictionOptions(**options)


def test_unknown_device_is_rejected(folder: Path) -> None:
    with pytest.raises(AutoSegError, match="device 'tpu' is unknown"):
        _predictor(folder, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(AutoSegError, match="no CUDA GPU"):
            _predictor(folder, device="cuda")


def test_tile_batch_and_mirroring_follow_the_options(
    tiny_preprocessed: DataRoots, tmp_path: Path
) -> None:
    folder = build_model_folder(tiny_preprocessed, tmp_path, configuration="2d", folds=(0,))
    model = ModelFolder.open(folder)
    networks = model.load_fold_networks()
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert Predictor(model, networks, PredictionOptions(), cuda).spec.tile_batch_size == 16
    assert Predictor(model, networks, PredictionOptions(), cpu).spec.tile_batch_size == 1
    explicit = PredictionOptions(tile_batch_size=4)
    assert Predictor(model, networks, explicit, cuda).spec.tile_batch_size == 4
    assert Predictor(model, networks, PredictionOptions(), cpu).spec.mirror_axes == (0, 1)
    no_tta = PredictionOptions(mirror_tta=False)
    assert Predictor(model, networks, no_tta, cpu).spec.mirror_axes is None
    with pytest.raises(AutoSegError, match="no fold networks"):
        Predictor(model, [], PredictionOptions(), cpu)


def test_cpu_bf16_runs_under_autocast_and_returns_float32(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = np.random.default_rng(3).normal(size=(1, 12, 32, 32)).astype(np.float32)
    exact = _predictor(folder, folds=[0])
    assert isinstance(exact.networks[0], nn.Module)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    fast = _predictor(folder, folds=[0], precision="auto")
    assert not isinstance(fast.networks[0], nn.Module)  # wrapped in autocast
    reference, logits = exact.predict_preprocessed(data), fast.predict_preprocessed(data)
    assert logits.dtype == torch.float32
    assert not torch.equal(logits, reference)
    scale = float(reference.abs().max())
    torch.testing.assert_close(logits, reference, rtol=0.0, atol=0.1 * scale)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert isinstance(_predictor(folder, folds=[0], precision="auto").networks[0], nn.Module)


def test_progress_runs_once_over_all_folds(folder: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    predictor = Predictor.from_model_folder(
        folder,
        PredictionOptions(device="cpu", mirror_tta=False, precision="fp32"),
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    predictor.predict_preprocessed(np.zeros((1, 12, 40, 32), np.float32))
    done = [d for _, d, _ in calls]
    assert done == sorted(done)
    assert calls[-1][1] == calls[-1][2]
    assert len(calls) == 4  # two tiles per fold, two folds


@pytest.mark.parametrize(
    ("shape", "layout"),
    [((2, 3, 8, 12, 10), torch.channels_last_3d), ((2, 3, 12, 10), torch.channels_last)],
)
def test_cpu_bf16_runs_channels_last_with_the_same_answer(
    shape: tuple[int, ...], layout: torch.memory_format
) -> None:
    conv = nn.Conv3d if len(shape) == 5 else nn.Conv2d
    network = nn.Sequential(conv(3, 4, 3, padding=1), nn.LeakyReLU(), conv(4, 2, 1)).eval()
    x = torch.randn(shape)
    with torch.no_grad():
        reference = network(x)
        logits = precision.in_cpu_bf16(network)(x)
    assert logits.dtype == torch.float32
    assert network[0].weight.is_contiguous(memory_format=layout)
    torch.testing.assert_close(
        logits, reference, rtol=0.0, atol=0.05 * float(reference.abs().max())
    )
