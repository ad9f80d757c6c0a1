"""Where a fold's training starts: the model kept before, the state resumed, the first weights.

A run starts from one of four points, chosen before the loop is built: a fresh network, the
checkpoint it resumes (``--c``; ``--val`` reads the final or best one), pretrained weights
(``-pretrained_weights``: every layer but the heads) or a warm start from a trained model
(``--from-model``, warm_start.py). A new training of a fold that holds a final model first keeps
that model as a version (model_versions.py), and a warm start from this very model then reads the
version. Kept apart from run.py, which runs the loop and the validation from whatever point this
module chose.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from autoseg.checkpoint import BEST, FINAL, LATEST, load_checkpoint, newest_checkpoint
from autoseg.errors import AutoSegError
from autoseg.training.distributed import DistributedContext
from autoseg.training.history import TrainingHistory
from autoseg.training.job import TrainingJob
from autoseg.training.model_versions import (
    keep_previous_model,
    newest_version,
    warm_start_from_version,
)
from autoseg.training.trainer import Trainer
from autoseg.training.warm_start import apply_warm_start, copy_weights, find_source

if TYPE_CHECKING:
    from autoseg.training.run import RunOptions


def load_pretrained(model: torch.nn.Module, path: Path) -> None:
    """Copy every weight except the segmentation heads; all others must match exactly."""
    weights = load_checkpoint(path)["network_weights"]
    fix = "use a checkpoint of a network planned like this configuration."
    copy_weights(model, weights, path, skip_heads=True, fix=fix)


def keep_previous_model_on_ranks(
    job: TrainingJob, options: RunOptions, dist: DistributedContext
) -> tuple[TrainingJob, Path | None]:
    """A new training of a fold that holds a final model keeps that model as a version first
    (model_versions.py); resuming or re-validating keeps nothing. Every rank learns the version,
    as a warm start from this model reads its weights there."""
    fresh = not (options.resume or options.validation_only)
    had_model = fresh and (job.fold_dir / FINAL).is_file()
    dist.barrier()  # every rank has looked before the main rank moves the model
    kept = keep_previous_model(job, options.command) if had_model and dist.is_main else None
    dist.barrier()  # every rank sees the emptied fold folder and the version
    if had_model and not dist.is_main:
        kept = newest_version(job.model_dir)
    return warm_start_from_version(job, kept), kept


def check_warm_start(job: TrainingJob, options: RunOptions) -> None:
    """Refuse a warm start that cannot work before anything is kept or written."""
    if job.settings.from_model is None or options.validation_only:
        return
    if options.pretrained_weights:
        raise AutoSegError(
            "-pretrained_weights and --from-model both choose the first weights. Fix: use one."
        )
    if not options.resume:
        find_source(job)


def restore(trainer: Trainer, state: dict[str, Any]) -> None:
    """Continue exactly where a checkpoint left off: weights, optimizer, scaler and history."""
    trainer.parts.model.load_state_dict(state["network_weights"])
    trainer.parts.optimizer.load_state_dict(state["optimizer_state"])
    if trainer.scaler is not None and state.get("grad_scaler_state"):
        trainer.scaler.load_state_dict(state["grad_scaler_state"])
    history = TrainingHistory.from_json(state["history"])
    history.truncate(int(state["current_epoch"]))
    history.best_ema = state.get("best_ema")
    trainer.state.history = history
    trainer.state.next_epoch = int(state["current_epoch"])


def resume_state(job: TrainingJob, options: RunOptions) -> dict[str, Any] | None:
    """The checkpoint a run continues from (``--c``) or validates (``--val``); None for a new run,
    which must find no checkpoints left in the fold (the previous model was kept as a version)."""
    if options.validation_only:
        name = BEST if options.use_best else FINAL
        path = job.fold_dir / name
        if not path.is_file():
            raise AutoSegError(f"{path}: --val needs a finished training (no {name} found)")
        return load_checkpoint(path)
    if not options.resume:
        if (job.fold_dir / FINAL).is_file() or (job.fold_dir / LATEST).is_file():
            raise AutoSegError(
                f"{job.fold_dir}: this fold already has checkpoints; use --c to continue it, --val "
                "to only re-run validation, or choose another results folder (nothing was changed)"
            )
        return None
    path = newest_checkpoint(job.fold_dir)
    if path is None:
        print(f"--c: no checkpoint in {job.fold_dir}; starting a new training", file=sys.stderr)
        return None
    return load_checkpoint(path)


def first_weights(trainer: Trainer, state: dict[str, Any] | None, options: RunOptions) -> list[str]:
    """Put the starting point's weights into the trainer; the lines a warm start logs."""
    if state is not None:
        restore(trainer, state)
    elif options.pretrained_weights:
        load_pretrained(trainer.parts.model, options.pretrained_weights)
    elif options.warm_start is not None:
        return apply_warm_start(trainer.parts.model, options.warm_start)
    return []
