"""Benchmark: training speed on the shared hippocampus plans (3d_fullres and 2d).

Prints, per configuration and device:
- augmentation batches/s of the real training pipeline (sampler + transforms) per worker count;
- training iterations/s with the real loader and loss, and the share of each iteration spent
  waiting for data vs in forward/backward/step (GPU work is synchronised before timing);
- validation-forward batches/s, and peak memory.

For scale, the reference implementation's figures on the same machine come from
bench/reference/run_reference_training.sh (2-core CPU, 3d_fullres: 3.8 s per training step,
1.1 s per validation batch, 152 s per epoch of 25 + 50 iterations).

    python bench/train_speed.py [--device cpu|cuda] [--iterations 10] [--workers 0 1 2]
        [--configurations 3d_fullres 2d] [--amp auto|on|off]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from autoseg.paths import DataRoots
from autoseg.planning import PlannerOptions
from autoseg.stages import (
    DatasetFolders,
    fingerprint_dataset,
    plan_dataset,
    preprocess_configurations,
)
from autoseg.training.distributed import DistributedContext
from autoseg.training.job import TrainingJob, resolve_job
from autoseg.training.recipe import build_batch_streams, build_training_parts
from autoseg.training.run import split_for
from autoseg.training.settings import TrainingSettings
from autoseg.training.trainer import LoopState, Trainer
from peak_memory import peak_rss_mb

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def prepare(root: Path, data: Path) -> DataRoots:
    """Plan and preprocess the shared hippocampus data into a scratch folder."""
    roots = DataRoots(root / "raw", root / "preprocessed", root / "results")
    roots.raw.mkdir(parents=True)
    (roots.raw / "Dataset004_Hippocampus").symlink_to((data / "Dataset004_Hippocampus").resolve())
    folders = DatasetFolders.resolve(4, roots)
    fingerprint_dataset(folders, 2)
    plans = plan_dataset(folders, PlannerOptions())
    preprocess_configurations(folders, plans.plans_name, ["2d", "3d_fullres"], 2)
    return roots


def bench_augmentation(job: TrainingJob, workers: int, batches: int) -> None:
    job = replace(job, settings=replace(job.settings, num_workers=workers))
    streams = build_batch_streams(job, split_for(job), DistributedContext(), seed=0)
    try:
        next(streams.train)  # worker start-up is not part of the rate
        started = time.perf_counter()
        for _ in range(batches):
            next(streams.train)
        rate = batches / (time.perf_counter() - started)
    finally:
        for close in streams.closers:
            close()
    print(f"  augmentation, {workers} worker(s): {rate:7.1f} batches/s")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_training(job: TrainingJob, iterations: int) -> None:
    parts = build_training_parts(job, split_for(job), DistributedContext(), seed=0)
    trainer = Trainer(job, parts, None, DistributedContext(), LoopState())
    waiting = computing = 0.0
    try:
        parts.network.train()
        for i in range(iterations + 2):  # two warm-up iterations (allocator, compile)
            t0 = time.perf_counter()
            batch = next(parts.train_batches)
            t1 = time.perf_counter()
            trainer.train_step(batch)
            _sync(parts.device)
            t2 = time.perf_counter()
            if i >= 2:
                waiting, computing = waiting + t1 - t0, computing + t2 - t1
        val_seconds = _bench_validation(trainer, iterations)
    finally:
        parts.close()
    per_iteration = (waiting + computing) / iterations
    print(
        f"  training: {1 / per_iteration:6.2f} it/s ({per_iteration:.3f} s/it: data wait "
        f"{100 * waiting / (waiting + computing):4.1f}%, compute {computing / iterations:.3f} s); "
        f"validation forward {1 / val_seconds:6.2f} batches/s; precision "
        f"{parts.amp_dtype or torch.float32}; peak RSS {peak_rss_mb():.0f} MB"
        + (
            f", GPU peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB"
            if parts.device.type == "cuda"
            else ""
        )
    )
    epoch = 250 * per_iteration + 50 * val_seconds
    print(f"  => one default epoch (250 train + 50 val iterations) ~ {epoch:.0f} s")


def _bench_validation(trainer: Trainer, iterations: int) -> float:
    from autoseg.training.online_metrics import PseudoDice

    trainer.parts.network.eval()
    dice = PseudoDice()
    with torch.no_grad():
        trainer.validation_step(next(trainer.parts.val_batches), dice)
        _sync(trainer.parts.device)
        started = time.perf_counter()
        for _ in range(iterations):
            trainer.validation_step(next(trainer.parts.val_batches), dice)
        _sync(trainer.parts.device)
    return (time.perf_counter() - started) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configurations", nargs="+", default=["3d_fullres", "2d"])
    parser.add_argument("--amp", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--training-workers", type=int, default=None)
    parser.add_argument("--data", type=Path, default=SHARED, help="folder with Dataset004")
    args = parser.parse_args()
    if not (args.data / "Dataset004_Hippocampus" / "dataset.json").is_file():
        sys.exit(f"shared data not found under {args.data}")
    settings = TrainingSettings(
        device=args.device, amp=args.amp, seed=0, num_workers=args.training_workers
    )
    with tempfile.TemporaryDirectory() as scratch:
        roots = prepare(Path(scratch), args.data)
        for configuration in args.configurations:
            job = resolve_job(4, configuration, 0, roots, settings)
            print(
                f"\n{configuration}: patch {job.config.patch_size}, batch {job.config.batch_size}, "
                f"device {args.device}, torch threads {torch.get_num_threads()}"
            )
            for workers in args.workers:
                bench_augmentation(job, workers, batches=20)
            bench_training(job, args.iterations)


if __name__ == "__main__":
    main()
