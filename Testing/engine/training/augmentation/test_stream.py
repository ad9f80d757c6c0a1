"""Background batch stream: inline and worker modes, seeding, clean shutdown (fork and spawn)."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from autoseg.errors import AutoSegError
from autoseg.training.augmentation import (
    augmentation_geometry,
    batch_stream,
    build_train_transforms,
    default_num_val_workers,
    default_num_workers,
)

PATCH = (8, 10, 6)


class ConstantLoader:
    """Always the same batch; its keys say which worker made it."""

    def __init__(self) -> None:
        self.thread_id = -1
        initial = augmentation_geometry(PATCH).initial_patch_size
        rng = np.random.default_rng(0)
        self.data = rng.normal(size=(2, 1, *initial)).astype(np.float32)
        self.seg = rng.integers(0, 3, size=(2, 1, *initial)).astype(np.int16)

    def set_thread_id(self, thread_id: int) -> None:
        self.thread_id = thread_id

    def __next__(self) -> dict:
        keys = [f"worker{self.thread_id}"] * 2
        return {"data": self.data.copy(), "seg": self.seg.copy(), "keys": keys}


def _transforms():
    return build_train_transforms(
        augmentation_geometry(PATCH),
        PATCH,
        deep_supervision_scales=[(1, 1, 1), (0.5, 0.5, 0.5)],
        regions=None,
        ignore_label=None,
    )


@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 1), (4, 3), (13, 12), (64, 12)])
def test_default_worker_counts(cpus, workers):
    assert default_num_workers(cpus) == workers


def test_default_worker_counts_for_this_machine_and_validation():
    assert 0 <= default_num_workers(None) <= 12
    assert [default_num_val_workers(n) for n in (0, 1, 2, 7, 12)] == [0, 1, 1, 3, 6]


def test_inline_stream_is_reproducible_from_its_seed():
    def first_batches(seed):
        with batch_stream(ConstantLoader(), _transforms(), num_workers=0, seed=seed) as stream:
            return [next(stream)["data"] for _ in range(6)]

    one, again, other = first_batches(1), first_batches(1), first_batches(2)
    assert all(torch.equal(a, b) for a, b in zip(one, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(one, other, strict=True))


def test_negative_worker_counts_are_reported():
    with pytest.raises(AutoSegError, match="num_workers"):
        batch_stream(ConstantLoader(), _transforms(), num_workers=-1, seed=0)


def test_two_workers_yield_batches_with_distinct_seeds_and_shut_down():
    stream = batch_stream(ConstantLoader(), _transforms(), num_workers=2, seed=7)
    batches = [next(stream) for _ in range(12)]
    workers = stream.processes()
    assert len(workers) == 2
    assert all(p.is_alive() for p in workers)
    stream.close()
    assert not any(p.is_alive() for p in workers)
    assert all(p.exitcode is not None for p in workers)  # joined: no zombies
    assert not set(workers) & set(multiprocessing.active_children())
    assert stream.processes() == []
    by_worker: dict[str, list[torch.Tensor]] = {}
    for batch in batches:
        assert tuple(batch["data"].shape) == (2, 1, *PATCH)
        assert tuple(batch["target"][1].shape) == (2, 1, 4, 5, 3)
        by_worker.setdefault(batch["keys"][0], []).append(batch["data"])
    assert set(by_worker) <= {"worker0", "worker1"}
    if len(by_worker) == 2:  # seeded differently, the workers augment differently
        assert not all(
            torch.equal(a, b)
            for a, b in zip(by_worker["worker0"], by_worker["worker1"], strict=False)
        )
    with pytest.raises(StopIteration):
        next(stream)
    stream.close()  # idempotent


SPAWN_SCRIPT = """
import multiprocessing, sys
import numpy as np
from autoseg.training.augmentation import batch_stream, build_val_transforms


class Loader:
    def set_thread_id(self, thread_id):
        self.thread_id = thread_id

    def __next__(self):
        seg = np.zeros((2, 1, 8, 8, 8), dtype=np.int16)
        seg[:, :, :4] = -1
        data = np.full((2, 1, 8, 8, 8), self.thread_id, dtype=np.float32)
        return {"data": data, "seg": seg, "keys": ["a", "b"]}


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    transforms = build_val_transforms(deep_supervision_scales=None, regions=None, ignore_label=None)
    with batch_stream(Loader(), transforms, num_workers=2, seed=0) as stream:
        batches = [next(stream) for _ in range(8)]
        workers = stream.processes()
    assert not any(p.is_alive() for p in workers), "workers still alive"
    assert not multiprocessing.active_children(), "children left"
    assert all(int(b["target"].min()) == 0 for b in batches)
    print("workers", sorted({float(b["data"].flatten()[0]) for b in batches}))
"""


@pytest.mark.slow
def test_spawn_start_method_works_and_shuts_down(tmp_path: Path):
    script = tmp_path / "spawn_stream.py"
    script.write_text(textwrap.dedent(SPAWN_SCRIPT), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "workers [" in result.stdout
