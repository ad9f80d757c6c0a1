"""Batches from a patch sampler through the augmentation, in background worker processes.

Augmentation runs on the CPU and is the usual bottleneck of GPU training (method.md §11, item 4),
so it runs in worker processes (batchgenerators' ``NonDetMultiThreadedAugmenter``, as in the
method): every worker owns a copy of the sampler and the transforms, draws its own random stream
(numpy's global state seeded with ``seed + worker``; the sampler is told its worker id through
``set_thread_id``) and puts finished batches in one shared queue. Batches arrive in completion
order, which is not reproducible across runs, but each worker's sequence is. Workers run with one
BLAS/torch thread each, so N workers use N cores.

``num_workers=0`` runs everything in the calling process (debugging, tests, tiny machines); it then
seeds numpy's global random state with ``seed``.

Always close a stream (``close()`` or ``with``): it stops the workers, drains their queue and joins
them, so that no orphaned or zombie processes are left. When the training process dies without
closing it (SIGKILL, the out-of-memory killer), the workers end by themselves (worker_lifetime.py).
It works with the ``fork`` and ``spawn`` start methods; with ``spawn`` the sampler and the
transforms must be picklable (ours are).
"""

# ruff: noqa: NPY002
# numpy's *global* random state on purpose: batchgenerators' workers seed only that state (and its
# contrast/gamma/mirror transforms draw from it), so one seeded stream drives the whole pipeline.

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from queue import Empty
from typing import Any, Protocol

import numpy as np
from batchgenerators.dataloading.nondet_multi_threaded_augmenter import (
    NonDetMultiThreadedAugmenter,
)
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgenerators.transforms.abstract_transforms import AbstractTransform

from autoseg.errors import AutoSegError
from autoseg.training.augmentation.worker_lifetime import ParentBoundSource

MAX_TRAIN_WORKERS = 12


class BatchSource(Protocol):
    """What the stream needs from a sampler: infinite ``next()`` and a worker id to reseed."""

    def __next__(self) -> dict[str, Any]: ...

    def set_thread_id(self, thread_id: int) -> None: ...


def seed_augmentation(seed: int) -> None:
    """Seed the random state every transform draws from (numpy's global state) in this process.

    The worker processes of :func:`batch_stream` are seeded by the augmenter; this is for work in
    the calling process (``num_workers=0``, tests, debugging).
    """
    np.random.seed(seed % 2**32)


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):  # respects taskset / cgroup CPU sets on Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_num_workers(cpu_count: int | None) -> int:
    """Training augmentation workers: ``min(12, cpus - 1)``, 0 on a single core.

    One core stays free for the main process: it moves batches to the device, launches the GPU
    work and runs the optimiser, and starving it idles the GPU however fast the workers are. With
    one core a worker would only compete with the main process, so augmentation then runs inline.
    Twelve is the method's default: with the default augmentation it keeps one GPU fed, and more
    workers cost RAM (each holds a sampler, its caches and queued batches) for no speed.
    ``cpu_count=None`` uses the CPUs this process may run on.
    """
    cpus = _available_cpus() if cpu_count is None else int(cpu_count)
    return max(0, min(MAX_TRAIN_WORKERS, cpus - 1))


def default_num_val_workers(num_train_workers: int) -> int:
    """Validation workers: half the training workers, at least 1 (0 when training is inline).

    Validation batches need no augmentation (cheap) and only 50 of them are drawn per epoch.
    """
    return 0 if num_train_workers <= 0 else max(1, num_train_workers // 2)


def _num_cached(num_workers: int) -> int:
    """Queue length: about 3 batches per worker, at least 3, and 6 to n/2 beyond 2 workers.

    The method caches max(6, n/2) training batches; a longer queue only costs shared memory.
    """
    return max(3, min(6, 3 * num_workers), num_workers // 2)


class _Augmenter(NonDetMultiThreadedAugmenter):
    """batchgenerators' augmenter with a shutdown that does not race the workers' exit.

    Batches hold torch tensors, which travel as shared-memory file descriptors fetched from the
    *sending* worker while the batch is unpickled. batchgenerators stops its workers at once, so a
    batch still in the pipe is unpickled after its worker died and the result thread fails with
    "FileNotFoundError / ConnectionResetError" (harmless but alarming, and an error under pytest).
    We first pause the workers, let the batches already queued arrive, and only then stop them.
    """

    GRACE_S = 0.1

    def _let_queued_batches_arrive(self, timeout: float) -> None:
        self.pause_event.set()
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline and self.results_loop_thread.is_alive():
            try:
                self.results_loop_queue.get_nowait()
                quiet_since = None
                continue
            except Empty:
                pass
            if not self._queue.empty():
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > self.GRACE_S:
                return  # nothing in flight for a while: safe to stop the workers
            time.sleep(self.wait_time)

    def _finish(self, timeout: float = 10, force: bool = False) -> None:
        running = self.initialized and self.abort_event is not None
        if running and not force and not self.abort_event.is_set():
            self._let_queued_batches_arrive(timeout)
        super()._finish(timeout=timeout, force=force)


class BatchStream:
    """Iterator of augmented batches; close it (or use ``with``) to stop the workers."""

    def __init__(self, augmenter: Any, workers: bool) -> None:
        self._augmenter = augmenter
        self._workers = workers
        self._closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._closed:
            raise StopIteration
        return next(self._augmenter)

    def processes(self) -> list[Any]:
        """The worker processes currently running (empty when inline or closed)."""
        return list(getattr(self._augmenter, "_processes", []))

    def close(self) -> None:
        """Stop and join the workers (idempotent)."""
        if not self._closed and self._workers:
            self._augmenter._finish()
        self._closed = True

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def batch_stream(
    loader: BatchSource,
    transforms: AbstractTransform,
    *,
    num_workers: int,
    seed: int,
    pin_memory: bool = False,
) -> BatchStream:
    """Augmented batches of ``loader`` (see the module docstring); workers start lazily."""
    if num_workers < 0:
        raise AutoSegError(
            f"num_workers={num_workers}: must be >= 0. Fix: pass 0 to augment in the main process."
        )
    if num_workers == 0:
        seed_augmentation(seed)
        loader.set_thread_id(0)
        return BatchStream(SingleThreadedAugmenter(loader, transforms), workers=False)
    augmenter = _Augmenter(
        ParentBoundSource(loader),
        transforms,
        num_workers,
        num_cached=_num_cached(num_workers),
        seeds=[(seed + i) % 2**32 for i in range(num_workers)],
        pin_memory=pin_memory,
    )
    return BatchStream(augmenter, workers=True)
