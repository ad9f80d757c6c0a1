"""Composition of a training run: network, optimiser, loss and data streams from plans + settings.

This is plain wiring with no loop in it, so that what a run is made of can be read in one place and
swapped by settings (not by subclassing a trainer).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from autoseg.inference.precision import cpu_has_native_bf16, resolve_device
from autoseg.network import build_network
from autoseg.training.augmentation import (
    AugmentationGeometry,
    augmentation_geometry,
    batch_stream,
    build_train_transforms,
    build_val_transforms,
    default_num_val_workers,
    default_num_workers,
    seed_augmentation,
)
from autoseg.training.distributed import DistributedContext
from autoseg.training.job import TrainingJob
from autoseg.training.loader import PatchSampler, SamplerConfig, rank_slots
from autoseg.training.losses import build_loss, deep_supervision_scales, deep_supervision_weights


@dataclass
class TrainingParts:
    """What the loop needs; ``model`` is the bare network, ``network`` what is called (maybe
    wrapped by DDP or torch.compile)."""

    model: nn.Module
    network: nn.Module
    optimizer: torch.optim.Optimizer
    loss: nn.Module
    train_batches: Iterator[dict[str, Any]]
    val_batches: Iterator[dict[str, Any]]
    device: torch.device
    amp_dtype: torch.dtype | None
    mirror_axes: tuple[int, ...]
    closers: list[Callable[[], None]] = field(default_factory=list)
    reseed: Callable[[int], None] | None = None

    def close(self) -> None:
        for close in self.closers:
            close()


def poly_lr(initial_lr: float, epoch: int, epochs: int, exponent: float = 0.9) -> float:
    """Polynomial decay set at the start of every epoch (method.md §5.1)."""
    return initial_lr * (1.0 - epoch / epochs) ** exponent


def mixed_precision_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """fp16 autocast on CUDA (the method's AMP); bf16 on CPUs that have it natively.

    bf16 on CPU is our addition: the method trains fp32 on CPU. bf16 keeps fp32's exponent range,
    so it needs no loss scaling, and weights and optimiser state stay fp32 (autocast only lowers
    the precision of convolution inputs). Measured on Dataset004 (README, benchmarks).
    """
    if setting == "off":
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and (setting == "on" or cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def _switch(value: str, default: bool) -> bool:
    return default if value == "auto" else value == "on"


def build_network_for(job: TrainingJob) -> nn.Module:
    config = job.config
    return build_network(
        config.architecture,
        job.num_input_channels,
        job.dataset.labels.num_segmentation_heads,
        deep_supervision=job.settings.deep_supervision,
    )


def build_loss_for(job: TrainingJob, distributed: bool = False) -> nn.Module:
    config, labels = job.config, job.dataset.labels
    weights = None
    if job.settings.deep_supervision:
        weights = deep_supervision_weights(config.architecture.n_stages - 1)
        if distributed and len(weights) > 1:
            # DDP requires a gradient for every parameter; a tiny weight keeps the lowest head in
            # the graph without changing the optimisation (the method does the same).
            weights[-1] = 1e-6
    return build_loss(
        regions=labels.has_regions,
        batch_dice=config.batch_dice,
        ignore_label=labels.ignore_label,
        deep_supervision_weights=weights,
    )


def _sampler(job: TrainingJob, cases: list[str], initial: tuple[int, ...], slots, seed: int):
    config = SamplerConfig(
        folder=job.data_dir,
        case_ids=tuple(cases),
        patch_size=tuple(job.config.patch_size),
        initial_patch_size=tuple(initial),
        forced_slots=tuple(slots),
        ignore_label=job.dataset.labels.ignore_label,
        previous_stage_folder=job.previous_stage_predictions,
        seed=seed,
    )
    return PatchSampler(config)


def _transforms(job: TrainingJob, geometry: AugmentationGeometry, *, train: bool):
    config, labels = job.config, job.dataset.labels
    scales = None
    if job.settings.deep_supervision:
        scales = deep_supervision_scales(config.architecture.strides)
    regions = labels.foreground_regions if labels.has_regions else None
    cascade = labels.foreground_labels if job.is_cascade else ()
    common = {
        "deep_supervision_scales": scales,
        "regions": regions,
        "ignore_label": labels.ignore_label,
        "cascade_labels": cascade,
    }
    if not train:
        return build_val_transforms(**common)
    mask = tuple(i for i, m in enumerate(config.preprocessing.use_mask_for_norm) if m)
    return build_train_transforms(geometry, config.patch_size, mask_channels=mask, **common)


@dataclass
class BatchStreams:
    train: Iterator[dict[str, Any]]
    val: Iterator[dict[str, Any]]
    closers: list[Callable[[], None]]
    reseed: Callable[[int], None] | None


def build_batch_streams(
    job: TrainingJob,
    split: tuple[list[str], list[str]],
    dist: DistributedContext,
    seed: int,
    start_epoch: int = 0,
) -> BatchStreams:
    """Training and validation batch iterators, in background worker processes unless
    ``num_workers`` is 0.

    Without workers every epoch's batches are a function of (seed, epoch), so a resumed run sees
    exactly the batches an uninterrupted one would (``reseed``). Worker processes cannot be reseeded
    per epoch; they get a seed that depends on the epoch they start at instead.
    """
    train_cases, val_cases = split
    config, settings = job.config, job.settings
    geometry = augmentation_geometry(config.patch_size)
    slots = rank_slots(
        config.batch_size, dist.world_size, dist.rank, settings.oversample_foreground
    )
    workers = default_num_workers(None) if settings.num_workers is None else settings.num_workers
    val_workers = default_num_val_workers(workers)
    if settings.val_workers is not None and workers:
        val_workers = settings.val_workers
    rank_seed = seed + 1000 * dist.rank
    worker_seed = rank_seed + 7919 * start_epoch if workers else rank_seed
    train_sampler = _sampler(job, train_cases, geometry.initial_patch_size, slots, worker_seed)
    val_sampler = _sampler(job, val_cases, tuple(config.patch_size), slots, worker_seed + 1)
    train = batch_stream(
        train_sampler, _transforms(job, geometry, train=True), num_workers=workers, seed=worker_seed
    )
    val = batch_stream(
        val_sampler,
        _transforms(job, geometry, train=False),
        num_workers=val_workers,
        seed=worker_seed + 7,
    )

    def reseed(epoch: int) -> None:
        seed_augmentation(rank_seed + 7919 * epoch)
        train_sampler.set_thread_id(2 * 7919 * epoch)
        val_sampler.set_thread_id(2 * 7919 * epoch + 1)

    return BatchStreams(train, val, [train.close, val.close], None if workers else reseed)


def build_training_parts(
    job: TrainingJob,
    split: tuple[list[str], list[str]],
    dist: DistributedContext,
    seed: int,
    start_epoch: int = 0,
) -> TrainingParts:
    """Network on its device, SGD with Nesterov momentum, the compound loss and the streams."""
    settings = job.settings
    device = dist.device if dist.device is not None else resolve_device(settings.device)
    model = build_network_for(job).to(device)
    network: nn.Module = dist.wrap(model)
    use_compile = _switch(settings.compile, device.type == "cuda" and not _is_windows())
    if use_compile:
        # Patch shapes are fixed: static compilation avoids symbolic-shape recompiles.
        network = torch.compile(network, dynamic=False)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.initial_lr,
        momentum=settings.momentum,
        nesterov=True,
        weight_decay=settings.weight_decay,
    )
    streams = build_batch_streams(job, split, dist, seed, start_epoch)
    geometry = augmentation_geometry(job.config.patch_size)
    loss = build_loss_for(job, dist.enabled).to(device)
    dist.share_batch_dice(loss)
    return TrainingParts(
        model=model,
        network=network,
        optimizer=optimizer,
        loss=loss,
        train_batches=streams.train,
        val_batches=streams.val,
        device=device,
        amp_dtype=mixed_precision_dtype(settings.amp, device),
        mirror_axes=geometry.mirror_axes,
        closers=streams.closers,
        reseed=streams.reseed,
    )


def _is_windows() -> bool:
    return sys.platform.startswith("win")


def epochs_left_estimate(epoch_seconds: list[float], remaining: int) -> float | None:
    """ETA from the median of recent epoch times (robust to a slow first epoch)."""
    if not epoch_seconds:
        return None
    recent = sorted(epoch_seconds[-10:])
    return recent[len(recent) // 2] * remaining if not math.isnan(recent[0]) else None
