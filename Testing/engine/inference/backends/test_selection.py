"""Backend choice: ``auto`` is OpenVINO on the CPU when installed, torch elsewhere (saying so once
when the runtime is missing); an explicit runtime that cannot run here is a clear error."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from autoseg.errors import AutoSegError
from autoseg.inference import precision
from autoseg.inference.backends import selection
from autoseg.inference.backends.base import BF16, FP32, device_for_backend
from autoseg.inference.backends.selection import (
    build_backends,
    resolve_backend,
    runtime_precision,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def no_runtimes(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without ``autoseg[cpu]``: the runtimes' modules cannot be found."""
    real = importlib.util.find_spec
    missing = {"openvino", "onnxruntime", "onnx"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else real(name, *a)
    )
    selection._say_torch_fallback.cache_clear()


@pytest.mark.usefixtures("no_runtimes")
def test_auto_without_runtimes_is_torch_and_says_so_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert [resolve_backend("auto", CPU) for _ in range(3)] == ["torch"] * 3
    err = capsys.readouterr().err
    assert err.count("OpenVINO is not installed") == 1
    assert "pip install 'autoseg[cpu]'" in err


@pytest.mark.usefixtures("no_runtimes")
@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_a_missing_runtime_asked_for_is_a_clear_error(name: str) -> None:
    with pytest.raises(AutoSegError, match=rf"backend {name} is not installed. Fix: pip install"):
        resolve_backend(name, CPU)


def test_auto_on_a_gpu_is_torch_silently(capsys: pytest.CaptureFixture[str]) -> None:
    assert resolve_backend("auto", CUDA) == "torch"
    assert resolve_backend("torch", CUDA) == "torch"
    assert capsys.readouterr().err == ""


def test_auto_on_the_cpu_is_openvino_when_installed() -> None:
    pytest.importorskip("openvino")
    pytest.importorskip("onnx")
    assert resolve_backend("auto", CPU) == "openvino"


@pytest.mark.parametrize("name", ["openvino", "onnxruntime"])
def test_a_runtime_on_a_gpu_device_is_refused(name: str) -> None:
    with pytest.raises(AutoSegError, match=f"backend {name} runs on the CPU.*-device cpu"):
        resolve_backend(name, CUDA)


@pytest.mark.parametrize(
    ("device", "backend", "resolved"),
    [
        ("auto", "openvino", "cpu"),  # a CPU runtime chosen on a GPU machine runs on the CPU
        ("auto", "onnxruntime", "cpu"),
        ("auto", "auto", "auto"),  # auto/auto: the GPU when there is one, with torch
        ("auto", "torch", "auto"),
        ("cuda", "openvino", "cuda"),  # an explicit device stays (and is refused above)
        ("cpu", "torch", "cpu"),
    ],
)
def test_a_cpu_runtime_makes_the_automatic_device_the_cpu(
    device: str, backend: str, resolved: str
) -> None:
    assert device_for_backend(device, backend) == resolved


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(AutoSegError, match="backend 'tensorrt' is unknown"):
        resolve_backend("tensorrt", CPU)


def test_precision_per_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection, "cpu_has_native_bf16", lambda: True)
    assert runtime_precision("openvino", "auto") == BF16
    assert runtime_precision("openvino", "fp32") == FP32
    assert runtime_precision("onnxruntime", "auto") == FP32  # no bf16 kernels on its CPU provider
    monkeypatch.setattr(selection, "cpu_has_native_bf16", lambda: False)
    assert runtime_precision("openvino", "auto") == FP32


def test_torch_backend_keeps_the_module_and_describes_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    network = nn.Conv3d(1, 2, 1)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    networks, description = build_backends("torch", [network], "auto", CPU, (1, 1, 4, 4, 4), [()])
    assert networks == [network]
    assert description.startswith("torch ")
    assert description.endswith("cpu fp32")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    networks, description = build_backends("torch", [network], "auto", CPU, (1, 1, 4, 4, 4), [()])
    assert networks[0] is not network  # wrapped in bf16 autocast
    assert description.endswith("cpu bf16")
