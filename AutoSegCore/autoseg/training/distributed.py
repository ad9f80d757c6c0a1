"""Data-parallel training with torch.distributed: one process per GPU (or CPU worker), DDP weights.

The same code runs under ``autoseg train -num_gpus N`` (we spawn the processes on this machine) and
under ``torchrun`` (the launcher sets RANK/WORLD_SIZE/LOCAL_RANK, which the CLI reads and passes in
as a ``DistributedContext``), so several nodes need no code change. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from autoseg.errors import AutoSegError


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a (possibly one-process) training group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP around the model when several processes train it, else the model itself."""
        if not self.enabled:
            return model
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        device_ids = [self.device.index] if self.device and self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def share_batch_dice(self, loss: nn.Module) -> None:
        """Make batch Dice statistics span the whole global batch, as one process would see it."""
        if not self.enabled:
            return
        for module in loss.modules():
            if getattr(module, "batch_dice", False) and hasattr(module, "batch_reduce"):
                module.batch_reduce = _differentiable_sum

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over all ranks (in place on a copy); identity for one process."""
        if not self.enabled:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def mean_of(self, value: float) -> float:
        if not self.enabled:
            return value
        device = self.device or torch.device("cpu")
        return float(self.sum(torch.tensor([value], device=device, dtype=torch.float64))) / (
            self.world_size
        )


def _differentiable_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks that gradients flow through (torch.distributed.nn's autograd all-reduce)."""
    from torch.distributed.nn.functional import all_reduce  # noqa: PLC0415 - optional submodule

    return all_reduce(tensor)


def free_port() -> int:
    """A TCP port nobody listens on, for the rendezvous of processes we spawn ourselves."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def init_group(rank: int, world_size: int, *, init_method: str, use_cuda: bool) -> None:
    """Join the process group: NCCL when every rank has a GPU, gloo otherwise."""
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)


def context_for(rank: int, world_size: int, local_rank: int, use_cuda: bool) -> DistributedContext:
    device = None
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    return DistributedContext(rank, world_size, local_rank, device)


def _spawned(
    local_rank: int, world_size: int, port: int, use_cuda: bool, work: Callable, args: tuple
) -> None:
    init_group(local_rank, world_size, init_method=f"tcp://127.0.0.1:{port}", use_cuda=use_cuda)
    try:
        work(context_for(local_rank, world_size, local_rank, use_cuda), *args)
    finally:
        dist.destroy_process_group()


def spawn(work: Callable[..., Any], args: tuple, *, world_size: int, use_cuda: bool) -> None:
    """Run ``work(context, *args)`` in ``world_size`` processes on this machine.

    ``work`` must be a module-level function (the processes are started with spawn, which also
    works where fork is unsafe, i.e. with CUDA initialised or on macOS/Windows).
    """
    if use_cuda and torch.cuda.device_count() < world_size:
        raise AutoSegError(
            f"-num_gpus {world_size}: only {torch.cuda.device_count()} CUDA GPU(s) are visible"
        )
    torch.multiprocessing.spawn(
        _spawned, args=(world_size, free_port(), use_cuda, work, args), nprocs=world_size
    )
