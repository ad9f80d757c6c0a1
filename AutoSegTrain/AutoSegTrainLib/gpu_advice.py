"""Advice on the GPU memory a training needs, before the user starts one.

Why: the planner sizes patch and batch for a GPU memory target (8 GB with the default planner,
like nnU-Net's), and a smaller GPU fails only minutes into training with "out of memory". The
probe (``device_detection``) reports each GPU's memory, so the panel can say beforehand which
target to plan for (``plan_and_preprocess --gpu-memory-target``: smaller patches) or that the CPU
is the way to try the loop. The target only acts when the data is planned (again).
"""

from __future__ import annotations

from autoseg.planning.presets import get_preset
from AutoSegCoreLib.device_detection import DeviceInfo

#: What the GPU itself, CUDA and PyTorch take besides the training (GB): the target to suggest is
#: the card's memory minus this.
RESERVED_GB = 1.0
#: Below this much memory (GB) a GPU trains only tiny patches; the CPU is as good a start.
SMALLEST_USEFUL_GB = 3.0


def default_target_gb() -> float:
    """The default planner's GPU memory target (GB)."""
    return get_preset("default").gpu_memory_target_gb


def suggested_target_gb(memory_gb: float) -> float:
    """The target to plan for on a GPU with ``memory_gb``, rounded down to half a GB."""
    return max(0.5, int((memory_gb - RESERVED_GB) * 2) / 2)


def gpu_memory_advice(info: DeviceInfo | None, device: str, target_gb: float | None) -> str:
    """One line for the panel: is the GPU big enough for the planned target, and what to do if not.

    ``device`` is the Train panel's choice (auto, cuda, cpu, mps); ``target_gb`` the GPU memory
    target field (None: the planner's default). Empty while the probe has not answered.
    """
    if info is None:
        return ""
    target = default_target_gb() if target_gb is None else target_gb
    if device == "cpu" or info.cuda_count == 0:
        reason = "CPU chosen" if device == "cpu" else "No CUDA GPU"
        return (
            f"{reason}: training runs on the CPU, hours to days for real data. Try the loop with "
            "few epochs, or train on a machine with an NVIDIA GPU."
        )
    if not info.cuda_memory_gb:
        return f"GPU memory unknown; plans are made for {target:g} GB."
    smallest = min(info.cuda_memory_gb)
    name = info.cuda_names[info.cuda_memory_gb.index(smallest)]
    if smallest < SMALLEST_USEFUL_GB:
        return (
            f"GPU {name} has {smallest:.1f} GB: too small to train well. Choose the CPU to try the "
            "loop, or a machine with a larger GPU."
        )
    if smallest - RESERVED_GB < target:
        return (
            f"GPU {name} has {smallest:.1f} GB; the plans are made for {target:g} GB and training "
            f"would run out of memory. Set the GPU memory target to "
            f"{suggested_target_gb(smallest):g} GB (smaller patches; re-plans the data) or "
            "train on the CPU."
        )
    return f"GPU {name} has {smallest:.1f} GB: enough for plans made for {target:g} GB."
