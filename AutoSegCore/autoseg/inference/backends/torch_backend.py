"""The torch backend: the network module itself, as the sliding window always ran it.

On CPUs with native bf16 and ``precision="auto"`` the module runs under bf16 autocast in
channels-last order (:func:`autoseg.inference.precision.in_cpu_bf16`); on CUDA the sliding window
applies fp16 autocast itself. Otherwise the module is returned unwrapped, so callers that look at
the module (eval mode, tests) see it.
"""

from __future__ import annotations

import torch

from autoseg.inference.backends.base import BF16, FP32
from autoseg.inference.precision import Network, in_cpu_bf16, uses_cpu_bf16


def torch_network(network: Network, precision: str, device: torch.device) -> Network:
    """``network`` as it runs for ``precision`` on ``device`` (bf16 autocast where it pays)."""
    return in_cpu_bf16(network) if uses_cpu_bf16(precision, device) else network


def torch_description(precision: str, device: torch.device) -> str:
    """One line saying how torch runs the network: version, device, precision."""
    if device.type == "cuda":
        computes = "fp16 autocast"
    else:
        computes = BF16 if uses_cpu_bf16(precision, device) else FP32
    return f"torch {torch.__version__} {device.type} {computes}"
