"""Device detection through a real child Python (no mocks of subprocess)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from AutoSegCoreLib import device_detection, process_tree
from AutoSegCoreLib.device_detection import (
    DeviceInfo,
    detect_devices,
    detect_devices_in_background,
    device_choices,
    query_nvidia_smi,
)

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="fake programs are shell scripts")


def _script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_detects_torch_in_this_python() -> None:
    info = detect_devices(sys.executable, nvidia_smi=None)
    assert info.torch_available
    assert info.torch_error is None
    assert info.torch_version == version("torch")
    assert info.cuda_count == len(info.cuda_names)
    assert info.devices[-1] == "cpu"
    if "+cpu" in version("torch"):
        assert info.cuda_count == 0
        assert info.best_device in {"cpu", "mps"}
    assert info.torch_version in info.summary()


@posix_only
def test_python_without_torch_is_reported(tmp_path: Path) -> None:
    fake = _script(
        tmp_path / "python",
        "echo \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n",
    )
    info = detect_devices(fake, nvidia_smi=None, timeout=5)
    assert not info.torch_available
    assert info.torch_error is not None
    assert "exit code 1" in info.torch_error
    assert "No module named 'torch'" in info.torch_error
    assert info.devices == ("cpu",)
    assert "PyTorch is not usable" in info.summary()


def test_import_error_inside_the_probe_is_reported(tmp_path: Path) -> None:
    (tmp_path / "torch.py").write_text("raise ImportError('broken torch install')\n")
    env = {"PATH": "", "PYTHONPATH": str(tmp_path), "SYSTEMROOT": "C:\\Windows"}
    info = detect_devices(sys.executable, env=env, nvidia_smi=None, timeout=5)
    assert info == DeviceInfo(torch_error="ImportError: broken torch install")


@posix_only
def test_probe_json_with_gpus_and_nvidia_smi_fallback(tmp_path: Path) -> None:
    payload = {"cuda": 2, "names": ["GPU A"], "mps": True, "torch": "9.9"}
    gpu_python = _script(tmp_path / "gpu_python", f"echo '{json.dumps(payload)}'\n")
    smi = _script(tmp_path / "nvidia-smi", "printf 'NVIDIA H200\\nNVIDIA A100\\n'\n")
    info = detect_devices(gpu_python, nvidia_smi=smi, timeout=5)
    assert info.cuda_names == ("GPU A", "CUDA device 1")
    assert info.devices == ("cuda:0", "cuda:1", "mps", "cpu")
    assert info.system_gpus == ()  # nvidia-smi is asked only when torch sees no GPU
    assert "GPU A" in info.summary()
    no_torch = _script(tmp_path / "no_torch", "exit 1\n")
    info = detect_devices(no_torch, nvidia_smi=smi, timeout=5)
    assert info.system_gpus == ("NVIDIA H200", "NVIDIA A100")
    assert info.gpu_unused
    assert "install CUDA PyTorch" in info.summary()


@posix_only
def test_probe_reports_each_gpus_memory_when_it_says_it_for_every_gpu(tmp_path: Path) -> None:
    payload = {"cuda": 2, "names": ["A", "B"], "memory_gb": [6.0, 79.6], "torch": "9.9"}
    python = _script(tmp_path / "python", f"echo '{json.dumps(payload)}'\n")
    assert detect_devices(python, nvidia_smi=None, timeout=5).cuda_memory_gb == (6.0, 79.6)
    payload["memory_gb"] = [6.0]
    python = _script(tmp_path / "python2", f"echo '{json.dumps(payload)}'\n")
    assert detect_devices(python, nvidia_smi=None, timeout=5).cuda_memory_gb == ()


@posix_only
def test_missing_programs_and_timeout(tmp_path: Path) -> None:
    info = detect_devices(tmp_path / "absent", nvidia_smi=tmp_path / "absent-smi")
    assert info.torch_error is not None
    assert info.torch_error.startswith("cannot run")
    assert info.system_gpus == ()
    assert query_nvidia_smi(_script(tmp_path / "bad-smi", "exit 9\n")) == ()
    slow = _script(tmp_path / "slow", "exec sleep 5\n")
    info = detect_devices(slow, nvidia_smi=None, timeout=0.3)
    assert info.torch_error is not None
    assert "did not answer within 0.3 s" in info.torch_error


def test_device_choices_offer_auto_first_and_each_gpu_for_prediction() -> None:
    info = DeviceInfo(torch_version="2.13", cuda_names=("A100", "H200"))
    assert device_choices(info) == [
        ("auto", "auto"),
        ("cuda:0 (A100)", "cuda:0"),
        ("cuda:1 (H200)", "cuda:1"),
        ("cpu", "cpu"),
    ]
    assert device_choices(info, per_gpu=False) == [
        ("auto", "auto"),
        ("cuda", "cuda"),
        ("cpu", "cpu"),
    ]
    assert device_choices(None) == [("auto", "auto"), ("cpu", "cpu")]
    apple = DeviceInfo(torch_version="2.13", mps=True)
    assert device_choices(apple) == [("auto", "auto"), ("mps", "mps"), ("cpu", "cpu")]


@posix_only
def test_detection_in_the_background_returns_a_future_with_the_answer(tmp_path: Path) -> None:
    answer = '{"cuda": 1, "names": ["H200"], "mps": false, "torch": "2.13.0"}'
    fake = _script(tmp_path / "python", f"sleep 0.2\necho '{answer}'\n")
    future = detect_devices_in_background(fake)
    assert not future.done()  # the caller (the module's timer) is not kept waiting
    info = future.result(timeout=30)
    assert info.cuda_names == ("H200",)


def test_probes_open_no_console_window_on_windows(monkeypatch) -> None:
    """Every probe (torch, nvidia-smi) passes CREATE_NO_WINDOW when Slicer runs on Windows."""
    calls: list[dict] = []

    def fake_run(command, **kwargs):
        calls.append(kwargs)
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="")

    monkeypatch.setattr(process_tree, "IS_WINDOWS", True)
    monkeypatch.setattr(device_detection.subprocess, "run", fake_run)
    detect_devices("python.exe", nvidia_smi="nvidia-smi.exe", timeout=1)
    assert len(calls) == 2  # the torch probe, then nvidia-smi (torch saw no GPU)
    assert all(call["creationflags"] == process_tree.CREATE_NO_WINDOW for call in calls)
    monkeypatch.setattr(process_tree, "IS_WINDOWS", False)
    query_nvidia_smi("nvidia-smi")
    assert "creationflags" not in calls[-1]
