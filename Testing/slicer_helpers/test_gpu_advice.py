"""gpu_advice: the Train panel's one line on GPU memory, for each kind of machine."""

from __future__ import annotations

import pytest

from AutoSegCoreLib.device_detection import DeviceInfo
from AutoSegTrainLib.gpu_advice import default_target_gb, gpu_memory_advice, suggested_target_gb


def gpus(*memory: float) -> DeviceInfo:
    names = tuple(f"GPU{i}" for i in range(len(memory)))
    return DeviceInfo(torch_version="2.9", cuda_names=names, cuda_memory_gb=memory)


def test_the_default_target_is_the_default_planners() -> None:
    assert default_target_gb() == 8


def test_a_small_gpu_gets_a_target_that_fits_it() -> None:
    advice = gpu_memory_advice(gpus(6.0), "auto", None)
    assert "GPU GPU0 has 6.0 GB; the plans are made for 8 GB" in advice
    assert "Set the GPU memory target to 5 GB" in advice
    assert "train on the CPU" in advice
    assert "enough" in gpu_memory_advice(gpus(6.0), "cuda", 5.0)


def test_the_smallest_of_several_gpus_decides() -> None:
    advice = gpu_memory_advice(gpus(80.0, 7.5), "cuda", None)
    assert "GPU GPU1 has 7.5 GB" in advice
    assert "6.5 GB" in advice
    assert "enough for plans made for 8 GB" in gpu_memory_advice(gpus(80.0, 24.0), "auto", None)


@pytest.mark.parametrize(
    ("info", "device", "expected"),
    [
        (None, "auto", ""),
        (DeviceInfo(torch_version="2.9"), "auto", "No CUDA GPU: training runs on the CPU"),
        (gpus(24.0), "cpu", "CPU chosen: training runs on the CPU"),
        (gpus(2.0), "auto", "GPU GPU0 has 2.0 GB: too small to train well. Choose the CPU"),
        (DeviceInfo(torch_version="2.9", cuda_names=("X",)), "auto", "GPU memory unknown"),
    ],
)
def test_other_machines(info, device, expected) -> None:
    advice = gpu_memory_advice(info, device, None)
    assert advice.startswith(expected) if expected else advice == ""


def test_suggested_targets_round_down_to_half_a_gigabyte() -> None:
    assert [suggested_target_gb(m) for m in (6.0, 7.9, 11.7, 1.2)] == [5.0, 6.5, 10.5, 0.5]
