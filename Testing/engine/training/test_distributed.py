"""Data-parallel training: two gloo processes on CPU end with identical weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoseg.checkpoint import unwrap_state_dict
from autoseg.paths import DataRoots
from autoseg.training.distributed import DistributedContext, spawn
from autoseg.training.loader import rank_batch_size
from autoseg.training.losses import SoftDiceLoss
from autoseg.training.recipe import build_batch_streams, build_training_parts
from autoseg.training.run import split_for
from autoseg.training.trainer import LoopState, Trainer

from .conftest import tiny_job


def _train_rank(context: DistributedContext, roots: DataRoots, out: Path) -> None:
    """Runs in each spawned process: a few DDP iterations, then the rank's weights to a file."""
    torch.set_num_threads(1)
    torch.manual_seed(context.rank)  # different initial weights: DDP must broadcast rank 0s
    job = tiny_job(roots, out / "results", epochs=1, iterations_per_epoch=3, val_iterations=1)
    parts = build_training_parts(job, split_for(job), context, seed=context.rank)
    torch.save(unwrap_state_dict(parts.model), out / f"init{context.rank}.pt")
    try:
        Trainer(job, parts, None, context, LoopState()).fit()
    finally:
        parts.close()
    torch.save(unwrap_state_dict(parts.model), out / f"rank{context.rank}.pt")
    _batch_dice_over_ranks(context, out)


def _batch_dice_over_ranks(context: DistributedContext, out: Path) -> None:
    """Each rank holds half of one batch; the shared batch Dice must equal the whole batch's."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 6, 6, 6, generator=generator)
    target = torch.randint(0, 3, (4, 1, 6, 6, 6), generator=generator)
    loss = SoftDiceLoss(batch_dice=True, do_bg=False)
    whole = float(loss(logits, target))
    context.share_batch_dice(loss)
    half = slice(2 * context.rank, 2 * context.rank + 2)
    shared = float(loss(logits[half], target[half]))
    (out / f"dice{context.rank}.txt").write_text(f"{whole} {shared}")


def test_two_cpu_ranks_end_with_identical_weights(tiny_preprocessed, tmp_path) -> None:
    spawn(_train_rank, (tiny_preprocessed, tmp_path), world_size=2, use_cuda=False)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)
    # The ranks were seeded differently (weights and batches); DDP broadcast rank 0's initial
    # weights and averaged the gradients, and training moved the weights.
    init0 = torch.load(tmp_path / "init0.pt", weights_only=True)
    init1 = torch.load(tmp_path / "init1.pt", weights_only=True)
    key = next(k for k in rank0 if k.endswith("conv.weight"))
    torch.testing.assert_close(init0[key], init1[key], rtol=0, atol=0)
    assert not torch.equal(init0[key], rank0[key])
    for rank in (0, 1):
        whole, shared = map(float, (tmp_path / f"dice{rank}.txt").read_text().split())
        assert shared == pytest.approx(whole, rel=1e-6)


def test_batch_is_split_across_ranks(tiny_preprocessed, tmp_path) -> None:
    job = tiny_job(tiny_preprocessed, tmp_path)
    sizes = []
    for rank in (0, 1):
        context = DistributedContext(rank=rank, world_size=2)
        streams = build_batch_streams(job, split_for(job), context, seed=0)
        try:
            sizes.append(next(streams.train)["data"].shape[0])
        finally:
            for close in streams.closers:
                close()
    batch = job.config.batch_size
    assert sizes == [rank_batch_size(batch, 2, 0), rank_batch_size(batch, 2, 1)]
    assert sum(sizes) == batch
