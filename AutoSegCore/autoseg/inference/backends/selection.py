"""Choosing and building the backend of a prediction.

``auto`` means OpenVINO on the CPU when it is installed (measured fastest there, bf16 where the
CPU has it natively, fp32 elsewhere) and torch otherwise: on a GPU, and on a CPU without the
optional runtimes, where it says once how to get the faster one. An explicit runtime that cannot
run here (not installed, or a GPU device) is a clear error rather than a silent switch.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from autoseg.errors import AutoSegError
from autoseg.inference.backends.base import (
    AUTO,
    BF16,
    FP32,
    OPENVINO,
    RUNTIME_MODULES,
    RUNTIMES,
    TORCH,
    ConversionRequest,
    check_backend,
)
from autoseg.inference.backends.torch_backend import torch_description, torch_network
from autoseg.inference.precision import Network, check_precision, cpu_has_native_bf16

INSTALL_HINT = "pip install 'autoseg[cpu]'"


def runtime_installed(name: str) -> bool:
    """Whether the modules a runtime backend needs can be imported (without importing them)."""
    return all(importlib.util.find_spec(module) is not None for module in RUNTIME_MODULES[name])


@functools.cache
def _say_torch_fallback() -> None:
    print(
        "Note: predicting with torch on the CPU; OpenVINO is not installed. "
        f"For faster CPU prediction: {INSTALL_HINT} (then --backend auto uses it).",
        file=sys.stderr,
    )


def resolve_backend(name: str, device: torch.device) -> str:
    """The backend that runs: ``auto`` resolved for ``device``; an impossible choice is an error."""
    check_backend(name)
    device = torch.device(device)
    if name == AUTO:
        if device.type != "cpu":
            return TORCH
        if runtime_installed(OPENVINO):
            return OPENVINO
        _say_torch_fallback()
        return TORCH
    if name in RUNTIMES:
        if device.type != "cpu":
            raise AutoSegError(
                f"backend {name} runs on the CPU, but the device is {device}. Fix: pass "
                "-device cpu, or --backend torch (or auto) for the GPU."
            )
        if not runtime_installed(name):
            raise AutoSegError(
                f"backend {name} is not installed. Fix: {INSTALL_HINT}, or use --backend torch."
            )
    return name


def runtime_precision(backend: str, precision: str) -> str:
    """What a runtime computes in: bf16 for OpenVINO ``auto`` on native-bf16 CPUs, else fp32."""
    check_precision(precision)
    if backend == OPENVINO and precision == AUTO and cpu_has_native_bf16():
        return BF16
    return FP32


def _convert(backend: str, request: ConversionRequest) -> Network:
    threads = torch.get_num_threads()  # the same CPU budget torch would have used
    if backend == OPENVINO:
        from autoseg.inference.backends.openvino_backend import OpenVinoBackend  # noqa: PLC0415

        return OpenVinoBackend.convert(request, threads)
    from autoseg.inference.backends.onnxruntime_backend import OnnxRuntimeBackend  # noqa: PLC0415

    return OnnxRuntimeBackend.convert(request, threads)


def build_backends(
    backend: str,
    networks: Sequence[Network],
    precision: str,
    device: torch.device,
    input_shape: tuple[int, ...],
    cache_folders: Sequence[Sequence[Path]],
) -> tuple[list[Network], str]:
    """Networks ready for the sliding window, and one line describing how they run.

    ``backend`` is resolved (:func:`resolve_backend`); ``cache_folders`` lists, per network,
    where its conversion may be cached (ignored by torch).
    """
    if backend == TORCH:
        wrapped = [torch_network(n, precision, device) for n in networks]
        return wrapped, torch_description(precision, device)
    computes = runtime_precision(backend, precision)
    converted = []
    for network, folders in zip(networks, cache_folders, strict=True):
        if not isinstance(network, nn.Module):
            raise AutoSegError(
                f"backend {backend} converts torch modules; got {type(network).__name__}. "
                "Fix: pass the fold networks as loaded (nn.Module), or use backend torch."
            )
        request = ConversionRequest(network, input_shape, computes, tuple(folders))
        converted.append(_convert(backend, request))
    return converted, str(getattr(converted[0], "description", backend))
