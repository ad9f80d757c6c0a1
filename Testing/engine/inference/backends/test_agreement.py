"""The runtimes agree with the torch fp32 path: labels on >= 99.9 % of the voxels.

Trained networks: the nnU-Net reference fixture's models (3d_fullres, 2d, residual encoder) on its
three test images, through the whole Predictor (sliding window, mirroring, export). Real data: the
shared hippocampus images through the sliding window with mirroring, when ../shared is present.
Each runtime is skipped cleanly when it is not installed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from Testing.engine.conftest import SHARED
from Testing.engine.interop.nnunet_reference import (
    CASES,
    MODELS,
    PLAIN,
    RESENC,
    TWO_D,
    agreement,
    case_files,
)

from autoseg.inference.backends.base import BF16, FP32
from autoseg.inference.backends.selection import build_backends, runtime_precision
from autoseg.inference.precision import cpu_has_native_bf16
from autoseg.inference.predictor import PredictionOptions, Predictor
from autoseg.inference.sliding_window import SlidingWindowSpec, predict_logits
from autoseg.network import build_network
from autoseg.plans import ArchitectureSpec

MIN_AGREEMENT = 0.999  # issue 15: labels equal to torch fp32 on >= 99.9 % of voxels
RUNTIMES = ("openvino", "onnxruntime")
HIPPOCAMPUS = SHARED / "data" / "Dataset004_Hippocampus" / "imagesTr"


def _require(backend: str) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip(backend)


def _copy_model(name: str, target: Path) -> Path:
    """The fixture model in tmp_path, so the conversion cache never lands in the repository."""
    return Path(shutil.copytree(MODELS / name, target / name))


def _predict(folder: Path, backend: str, precision: str = FP32) -> list[np.ndarray]:
    options = PredictionOptions(device="cpu", precision=precision, backend=backend)
    predictor = Predictor.from_model_folder(folder, options)
    output = folder.parent / f"predicted_{backend}_{precision}"
    return [
        predictor.predict_files(case_files(c), output / f"{c}.nii.gz").segmentation for c in CASES
    ]


@pytest.mark.parametrize("backend", RUNTIMES)
def test_runtime_fp32_agrees_with_torch_fp32_on_a_trained_model(
    backend: str, tmp_path: Path
) -> None:
    _require(backend)
    folder = _copy_model(PLAIN, tmp_path)
    reference = _predict(folder, "torch")
    for labels, expected in zip(_predict(folder, backend), reference, strict=True):
        assert agreement(labels, expected) >= MIN_AGREEMENT
    assert any((folder / "fold_0" / "runtime_cache").glob(f"{backend}_*.json"))


@pytest.mark.slow
@pytest.mark.parametrize("model", [TWO_D, RESENC])
@pytest.mark.parametrize("backend", RUNTIMES)
def test_runtime_fp32_agrees_on_2d_and_residual_encoder_models(
    backend: str, model: str, tmp_path: Path
) -> None:
    _require(backend)
    folder = _copy_model(model, tmp_path)
    reference = _predict(folder, "torch")
    for labels, expected in zip(_predict(folder, backend), reference, strict=True):
        assert agreement(labels, expected) >= MIN_AGREEMENT


@pytest.mark.slow
def test_openvino_default_precision_agrees_with_torch_fp32(tmp_path: Path) -> None:
    """What ``auto`` runs on this CPU (bf16 where it is native) still meets the target."""
    _require("openvino")
    folder = _copy_model(PLAIN, tmp_path)
    reference = _predict(folder, "torch")
    for labels, expected in zip(_predict(folder, "openvino", "auto"), reference, strict=True):
        assert agreement(labels, expected) >= MIN_AGREEMENT


def _hippocampus_images(count: int) -> list[torch.Tensor]:
    if not HIPPOCAMPUS.is_dir():
        pytest.skip(f"{HIPPOCAMPUS} is absent (the shared benchmark data)")
    images = []
    for path in sorted(HIPPOCAMPUS.glob("*_0000.nii.gz"))[:count]:
        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
        images.append(torch.from_numpy((array - array.mean()) / array.std())[None])
    return images


@pytest.mark.parametrize("backend", RUNTIMES)
def test_runtime_fp32_agrees_on_hippocampus_images(backend: str, tmp_path: Path) -> None:
    _require(backend)
    images = _hippocampus_images(2)
    spec = ArchitectureSpec(
        network="PlainConvUNet",
        features_per_stage=(8, 16, 32, 32),
        kernel_sizes=((3, 3, 3),) * 4,
        strides=((1, 1, 1),) + ((2, 2, 2),) * 3,
        n_blocks_per_stage=(2,) * 4,
        n_conv_per_stage_decoder=(2,) * 3,
        conv_bias=True,
        norm="InstanceNorm",
        nonlin="LeakyReLU",
    )
    torch.manual_seed(0)
    network = build_network(spec, 1, 3, deep_supervision=False).eval()
    window = SlidingWindowSpec(patch_size=(40, 56, 40), mirror_axes=(0, 1, 2))
    shape = (1, 1, *window.patch_size)
    cpu = torch.device("cpu")
    (runtime,), description = build_backends(backend, [network], FP32, cpu, shape, [(tmp_path,)])
    assert description.startswith(backend)
    assert description.endswith(FP32)
    for image in images:
        expected = predict_logits(network, image, window, num_classes=3, device=cpu)
        logits = predict_logits(runtime, image, window, num_classes=3, device=cpu)
        assert float((logits.argmax(0) == expected.argmax(0)).float().mean()) >= MIN_AGREEMENT
        torch.testing.assert_close(logits, expected, rtol=0.0, atol=1e-3)


def test_bf16_is_what_openvino_auto_computes_on_native_bf16_cpus() -> None:
    expected = BF16 if cpu_has_native_bf16() else FP32
    assert runtime_precision("openvino", "auto") == expected
