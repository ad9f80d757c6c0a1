"""Where and in which precision an inference network runs.

Inference may not import training code (a model folder is served without it), so the device choice
and the CPU bf16 check live here as well. On CPUs with native bf16 instructions (AVX512-BF16 or AMX)
bf16 convolutions are 2-3x faster than fp32 and keep fp32's exponent range, so ``"auto"`` uses them;
elsewhere bf16 is emulated and slower, so it stays off. On CUDA the sliding window itself applies
the method's fp16 autocast, so nothing is wrapped here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import torch

from autoseg.errors import AutoSegError

PRECISIONS = ("auto", "fp32")
DEVICES = ("auto", "cpu", "cuda", "mps")

Network = Callable[[torch.Tensor], torch.Tensor]


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU runs bf16 natively (oneDNN support and the AVX512-BF16/AMX flags).

    Cached: the CPU does not change while the process runs, and /proc/cpuinfo is read once."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except (AttributeError, RuntimeError, OSError):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then the CPU; a device that is not here is a clear error."""
    base = name.split(":", 1)[0]
    if base not in DEVICES:
        raise AutoSegError(
            f"device {name!r} is unknown. Fix: use one of {', '.join(DEVICES)} (or cuda:N)."
        )
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise AutoSegError("device cuda: no CUDA GPU is available here. Fix: use device cpu.")
    if base == "mps" and not torch.backends.mps.is_available():
        raise AutoSegError("device mps: Apple MPS is not available here. Fix: use device cpu.")
    return torch.device(name)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise AutoSegError(
            f"precision {precision!r} is unknown. Fix: use one of {', '.join(PRECISIONS)}."
        )


def uses_cpu_bf16(precision: str, device: torch.device) -> bool:
    """Whether the network should run under CPU bf16 autocast for this precision and device."""
    check_precision(precision)
    return precision == "auto" and device.type == "cpu" and cpu_has_native_bf16()


def in_cpu_bf16(network: Network) -> Network:
    """``network`` under CPU bf16 autocast, returning float32 logits (weights stay fp32).

    Inputs and weights are also put in channels-last order: oneDNN's bf16 convolutions run on
    that layout natively, which saves a reorder of every activation (measured in
    ``bench/predict.py``). A module is converted once, at its first call, when the number of
    spatial dimensions is known.
    """
    converted: list[torch.memory_format] = []

    def run(x: torch.Tensor) -> torch.Tensor:
        layout = _CHANNELS_LAST.get(x.ndim)
        if layout is not None:
            if isinstance(network, torch.nn.Module) and layout not in converted:
                network.to(memory_format=layout)
                converted.append(layout)
            x = x.contiguous(memory_format=layout)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return network(x).float()

    return run


_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}
