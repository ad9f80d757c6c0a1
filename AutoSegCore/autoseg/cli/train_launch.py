"""Turn a ``train`` request into fold runs: in this process, as DDP ranks, or one fold per GPU.

A stop request ends the command (no further fold starts): ``launch`` lets ``TrainingStopped``
through to the CLI, which reports it and exits 0; a spawned process reports it and ends normally.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import torch

from autoseg.errors import AutoSegError
from autoseg.paths import DataRoots
from autoseg.training.distributed import DistributedContext, context_for, init_group, spawn
from autoseg.training.job import TrainingJob, parse_fold, resolve_job
from autoseg.training.run import RunOptions, train_fold
from autoseg.training.run_log import Mirror
from autoseg.training.settings import TrainingSettings
from autoseg.training.stop_request import TrainingStopped
from autoseg.training.validation import validation_dice
from autoseg.training.warm_start import with_fine_tuning


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked ``autoseg train`` for, before any folder is resolved."""

    dataset: str
    configuration: str
    folds: tuple[str, ...]
    plans_name: str | None
    settings: TrainingSettings
    roots: DataRoots
    resume: bool = False
    validation_only: bool = False
    use_best: bool = False
    save_npz: bool = False
    pretrained_weights: str | None = None
    num_gpus: int = 1
    echo: TextIO | None = None
    command: str = "autoseg train"
    mirror: Mirror | None = None
    # Settings the user gave (flags, --set, settings file): fine-tuning defaults leave them alone.
    explicit_settings: frozenset[str] = frozenset()


def build_job(request: TrainRequest, fold: int | str) -> TrainingJob:
    """Resolve dataset, plans and folders for one fold; every mistake is a one-line error.

    A warm start (settings.from_model) is checked here, before any fold trains, and gets the
    fine-tuning schedule unless the user chose epochs or learning rate (a continued one: its own).
    """
    job = resolve_job(
        request.dataset,
        request.configuration,
        fold,
        request.roots,
        request.settings,
        plans_name=request.plans_name,
    )
    if request.validation_only:
        return job
    return with_fine_tuning(job, request.explicit_settings, resume=request.resume)


def _options(request: TrainRequest) -> RunOptions:
    return RunOptions(
        resume=request.resume,
        validation_only=request.validation_only,
        use_best=request.use_best,
        save_npz=request.save_npz,
        pretrained_weights=Path(request.pretrained_weights) if request.pretrained_weights else None,
        echo=request.echo,
        command=request.command,
        mirror=request.mirror,
    )


def _train_one(job: TrainingJob, request: TrainRequest, dist: Any = None) -> None:
    summary = train_fold(job, _options(request), dist)
    if summary is not None:  # printed even with --quiet: it is the result of the command
        print(f"{job.fold_dir}: mean validation Dice {validation_dice(summary):.4f}")


def _ddp_worker(context: Any, request: TrainRequest, fold: int | str) -> None:
    try:
        _train_one(build_job(request, fold), request, context)
    except TrainingStopped as stopped:  # not a failure of the spawned process
        if context.rank == 0:
            print(stopped, file=sys.stderr)


def _fold_on_gpu(context: Any, request: TrainRequest, folds: tuple[int | str, ...]) -> None:
    """One process per GPU, each training its own folds (no gradient exchange)."""
    own = DistributedContext(device=context.device)
    quiet = replace(request, echo=None, mirror=None)  # lines of several folds would interleave
    for fold in folds[context.rank :: context.world_size]:
        try:
            _train_one(build_job(request, fold), quiet, own)
        except TrainingStopped as stopped:
            print(stopped, file=sys.stderr)
            return


def launch(request: TrainRequest, torchrun: tuple[int, int, int] | None) -> int:
    """Run the request's folds; returns the exit code."""
    folds = tuple(dict.fromkeys(parse_fold(f) for f in request.folds))
    jobs = [build_job(request, fold) for fold in folds]  # validate everything before training
    if torchrun is not None:
        return _launch_torchrun(request, jobs, torchrun)
    if request.num_gpus < 1:
        raise AutoSegError(f"-num_gpus {request.num_gpus}: must be at least 1")
    if request.num_gpus == 1:
        for job in jobs:
            _train_one(job, request)
        return 0
    use_cuda = request.settings.device in ("auto", "cuda")
    if len(folds) > 1:
        spawn(_fold_on_gpu, (request, folds), world_size=request.num_gpus, use_cuda=use_cuda)
        return 0
    spawn(_ddp_worker, (request, folds[0]), world_size=request.num_gpus, use_cuda=use_cuda)
    return 0


def _launch_torchrun(request: TrainRequest, jobs: list[TrainingJob], torchrun) -> int:
    rank, world_size, local_rank = torchrun
    use_cuda = request.settings.device in ("auto", "cuda") and torch.cuda.is_available()
    init_group(rank, world_size, init_method="env://", use_cuda=use_cuda)
    context = context_for(rank, world_size, local_rank, use_cuda)
    echo = request.echo if rank == 0 else None
    for job in jobs:
        _train_one(job, replace(request, echo=echo), context)
    return 0
