"""The backend contract, the backend names and the precisions a runtime can run in.

A backend is any callable from a float32 CPU batch of patches to float32 logits, so the sliding
window treats a torch module and a compiled runtime model alike. Runtime backends describe
themselves in one line (runtime, version, precision) for the prediction log and the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from autoseg.errors import AutoSegError

if TYPE_CHECKING:  # the names above are read without torch (the CLI's choices, the Slicer side)
    import torch
    from torch import nn

AUTO = "auto"
TORCH = "torch"
OPENVINO = "openvino"
ONNXRUNTIME = "onnxruntime"
BACKENDS = (AUTO, TORCH, OPENVINO, ONNXRUNTIME)
RUNTIMES = (OPENVINO, ONNXRUNTIME)  # the backends that need a converted network
# The Python modules each runtime backend needs (the conversion goes through ONNX); each comes
# from the distribution of the same name, which the Slicer side checks and installs without torch.
RUNTIME_MODULES = {OPENVINO: ("openvino", "onnx"), ONNXRUNTIME: ("onnxruntime", "onnx")}

FP32 = "fp32"
BF16 = "bf16"


@runtime_checkable
class PatchBackend(Protocol):
    """Runs a network: ``(b, c, *patch)`` float32 CPU tensor -> ``(b, K, *patch)`` float32 logits."""

    description: str

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class ConversionRequest:
    """One network to convert for a runtime.

    Attributes:
        network: the torch module with its weights (converted in eval mode, on the CPU).
        input_shape: ``(1, c, *patch)``; the batch axis stays free, the rest is fixed.
        precision: what the runtime computes in ("fp32" or "bf16"), resolved for this CPU.
        cache_folders: where a conversion may be cached, in order of preference.
    """

    network: nn.Module
    input_shape: tuple[int, ...]
    precision: str
    cache_folders: tuple[Path, ...]


def check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise AutoSegError(f"backend {name!r} is unknown. Fix: use one of {', '.join(BACKENDS)}.")


def device_for_backend(device: str, backend: str) -> str:
    """The device to resolve for ``backend``: a CPU runtime chosen explicitly runs on the CPU when
    the device was left to ``auto`` (on a GPU machine ``auto`` would pick CUDA, which the runtime
    refuses); an explicit device is kept, so a CPU runtime with ``cuda`` stays a clear error."""
    return "cpu" if backend in RUNTIMES and device == AUTO else device
