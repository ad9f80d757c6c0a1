"""Find the compute devices the engine can use, without importing torch in Slicer's process.

Why a child process: importing torch inside Slicer loads CUDA DLLs that clash with Slicer's own
libraries and locks files a later torch upgrade must replace. So a short script in the engine's
Python (PythonSlicer in Slicer) imports torch and prints one JSON line. When torch is missing or
sees no CUDA device, ``nvidia-smi`` is asked which NVIDIA GPUs the machine has, so the module can
say "install a CUDA build of torch" instead of silently training on the CPU.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from AutoSegCoreLib.process_tree import windowless

PROBE_SCRIPT = """\
import json, sys
try:
    import torch
except Exception as exc:  # missing or broken install: report it, never crash
    print(json.dumps({"error": type(exc).__name__ + ": " + str(exc)}))
    sys.exit(0)
n = torch.cuda.device_count() if torch.cuda.is_available() else 0
mps_backend = getattr(torch.backends, "mps", None)
mps = bool(mps_backend is not None and mps_backend.is_available())
names = [torch.cuda.get_device_name(i) for i in range(n)]
memory = [torch.cuda.get_device_properties(i).total_memory / 2**30 for i in range(n)]
print(json.dumps({"cuda": n, "names": names, "memory_gb": memory, "mps": mps, "torch": torch.__version__}))
"""


@dataclass(frozen=True)
class DeviceInfo:
    """What the engine's Python can compute on.

    ``cuda_names`` are the GPUs torch can use (index = CUDA device index), ``cuda_memory_gb``
    their total memory (GiB; empty when the probe did not say); ``system_gpus`` are
    NVIDIA GPUs that ``nvidia-smi`` lists (only asked when torch sees none). ``torch_error``
    says why torch could not be probed (``None`` when it could).
    """

    torch_version: str | None = None
    cuda_names: tuple[str, ...] = ()
    cuda_memory_gb: tuple[float, ...] = ()
    mps: bool = False
    system_gpus: tuple[str, ...] = ()
    torch_error: str | None = None

    @property
    def torch_available(self) -> bool:
        """True when the probe imported torch."""
        return self.torch_version is not None

    @property
    def cuda_count(self) -> int:
        """Number of CUDA devices torch can use."""
        return len(self.cuda_names)

    @property
    def devices(self) -> tuple[str, ...]:
        """Choices for the engine's ``--device``: ``"cuda:0"``..., ``"mps"``, then ``"cpu"``."""
        cuda = tuple(f"cuda:{i}" for i in range(self.cuda_count))
        return (*cuda, *(("mps",) if self.mps else ()), "cpu")

    @property
    def best_device(self) -> str:
        """What ``device="auto"`` should pick: the first GPU, else MPS, else the CPU."""
        return self.devices[0]

    @property
    def gpu_unused(self) -> bool:
        """The machine has an NVIDIA GPU that torch cannot use (missing or CPU-only torch)."""
        return bool(self.system_gpus) and self.cuda_count == 0

    def summary(self) -> str:
        """One line for the module's status label."""
        if not self.torch_available:
            text = f"PyTorch is not usable ({self.torch_error})"
        elif self.cuda_count:
            text = f"PyTorch {self.torch_version}, GPU: {', '.join(self.cuda_names)}"
        else:
            text = f"PyTorch {self.torch_version}, " + ("Apple MPS" if self.mps else "CPU only")
        if self.gpu_unused:
            text += f"; NVIDIA GPU present ({', '.join(self.system_gpus)}): install CUDA PyTorch"
        return text


def detect_devices(
    python_executable: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    nvidia_smi: str | os.PathLike[str] | None = "auto",
) -> DeviceInfo:
    """Probe ``python_executable`` for torch devices in a child process; never raises.

    ``timeout`` bounds the probe (a first CUDA initialisation can take many seconds).
    ``nvidia_smi``: ``"auto"`` finds it on PATH, ``None`` skips it, or a path to the program.
    """
    probe, error = _probe_torch(python_executable, env=env, timeout=timeout)
    info = DeviceInfo(torch_error=error) if probe is None else _from_probe(probe)
    if info.cuda_count == 0 and nvidia_smi is not None:
        program = shutil.which("nvidia-smi") if nvidia_smi == "auto" else os.fspath(nvidia_smi)
        if program:
            info = replace(info, system_gpus=query_nvidia_smi(program))
    return info


def query_nvidia_smi(
    program: str | os.PathLike[str] = "nvidia-smi", timeout: float = 10.0
) -> tuple[str, ...]:
    """GPU names from ``nvidia-smi --query-gpu=name --format=csv,noheader``; () when it fails."""
    result = _run([os.fspath(program), "--query-gpu=name", "--format=csv,noheader"], None, timeout)
    if isinstance(result, str) or result.returncode != 0:
        return ()
    return tuple(line.strip() for line in result.stdout.splitlines() if line.strip())


def _probe_torch(
    python_executable: str | os.PathLike[str], *, env: Mapping[str, str] | None, timeout: float
) -> tuple[dict[str, Any] | None, str | None]:
    """The probe's JSON object, or ``None`` and the reason it could not be had."""
    command = [os.fspath(python_executable), "-c", PROBE_SCRIPT]
    result = _run(command, env, timeout)
    if isinstance(result, str):
        return None, result
    obj = _last_json_object(result.stdout)
    if obj is None:
        tail = _last_line(result.stderr) or _last_line(result.stdout) or "no output"
        return None, f"probe failed with exit code {result.returncode}: {tail}"
    if "error" in obj:
        return None, str(obj["error"])
    return obj, None


def _from_probe(obj: dict[str, Any]) -> DeviceInfo:
    names = tuple(str(n) for n in obj.get("names", []))
    count = int(obj.get("cuda", len(names)))
    names = (names + tuple(f"CUDA device {i}" for i in range(len(names), count)))[:count]
    memory = tuple(float(m) for m in obj.get("memory_gb", []))
    return DeviceInfo(
        torch_version=str(obj.get("torch")),
        cuda_names=names,
        cuda_memory_gb=memory if len(memory) == count else (),
        mps=bool(obj.get("mps")),
    )


def _run(
    command: Sequence[str], env: Mapping[str, str] | None, timeout: float
) -> subprocess.CompletedProcess[str] | str:
    """Run to completion; a string says why it could not run (missing program, timeout).

    No console window opens on Windows (the probes run while the module's panel is shown).
    """
    try:
        return subprocess.run(  # a fixed probe command, no shell
            list(command),
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            **windowless(),
        )
    except subprocess.TimeoutExpired:
        return f"{command[0]} did not answer within {timeout:g} s"
    except OSError as exc:
        return f"cannot run {command[0]}: {exc}"


def _last_json_object(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def detect_devices_in_background(
    python_executable: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> concurrent.futures.Future[DeviceInfo]:
    """``detect_devices`` on a worker thread: the first torch import can take many seconds.

    The modules poll ``future.done()`` from their timer, so the panel opens at once and the
    device list fills in when the probe answers.
    """
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="devices")
    future = executor.submit(detect_devices, python_executable, env=env)
    executor.shutdown(wait=False)
    return future


def device_choices(info: DeviceInfo | None, *, per_gpu: bool = True) -> list[tuple[str, str]]:
    """``(label, -device value)`` pairs for a device menu, "auto" first.

    ``per_gpu``: one entry per GPU (``cuda:1 (NVIDIA ...)``) for prediction; ``False`` gives one
    ``cuda`` entry, for training, where GPUs are chosen separately (one fold per GPU). Before the
    probe answers (``info`` None) only "auto" and "cpu" are offered.
    """
    choices = [("auto", "auto")]
    devices = info.devices if info is not None else ("cpu",)
    for device in devices:
        if device.startswith("cuda:") and not per_gpu:
            if ("cuda", "cuda") not in choices:
                choices.append(("cuda", "cuda"))
        elif device.startswith("cuda:"):
            name = info.cuda_names[int(device.split(":")[1])]
            choices.append((f"{device} ({name})", device))
        else:
            choices.append((device, device))
    return choices
