"""Train one fold end to end: lock, split, resume or start, loop, final validation, logs.

``train_fold`` is the Python API behind ``autoseg train``; it runs in every rank of a distributed
run with the same arguments. The main rank holds the fold lock (fold_lock.py) for the whole run,
so a second training of the fold is refused. A stop request (stop_request.py) ends the loop after
the current iteration with ``checkpoint_latest.pth`` written and a ``stopped`` event; a request
during the final validation ends it (the training is complete, ``--val`` redoes the validation).
An allocation failure ends the run with an ``out_of_memory`` error event and a one-line error.
A new training of a fold that holds a final model first keeps that model as a numbered version
(model_versions.py), so nothing is overwritten.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn, TextIO

import torch

from autoseg.checkpoint import FINAL, LATEST
from autoseg.errors import AutoSegError
from autoseg.model_listing import record_fold_cases
from autoseg.network import describe_network
from autoseg.out_of_memory import OUT_OF_MEMORY, TRAINING_ADVICE, is_out_of_memory, out_of_memory
from autoseg.preprocessing.storage import case_ids
from autoseg.training.comparison import compare_after_warm_start
from autoseg.training.distributed import DistributedContext
from autoseg.training.fold_lock import acquire_fold_lock
from autoseg.training.job import TrainingJob
from autoseg.training.recipe import (
    build_network_for,
    build_training_parts,
    resolve_device,
)
from autoseg.training.run_log import Mirror, RunLog
from autoseg.training.settings import SETTINGS_FILE
from autoseg.training.splits import fold_cases, load_or_create_splits
from autoseg.training.starting_point import (
    check_warm_start,
    first_weights,
    keep_previous_model_on_ranks,
    resume_state,
)
from autoseg.training.stop_request import StopRequest, TrainingStopped, clear_stop_request
from autoseg.training.trainer import LoopState, StopRequested, Trainer
from autoseg.training.validation import ValidationSetup, run_final_validation, validation_dice
from autoseg.training.warm_start import (
    WarmStart,
    load_warm_start,
)


@dataclass(frozen=True)
class RunOptions:
    """How to run a fold (not what to train: that is the job's settings)."""

    resume: bool = False
    validation_only: bool = False
    use_best: bool = False
    save_npz: bool = False
    pretrained_weights: Path | None = None
    echo: TextIO | None = None
    # What the fold lock tells a second run about this one (the CLI passes the command line).
    command: str = "autoseg train (Python API)"
    # Receives every events.jsonl record too (``--progress json`` prints them on stdout).
    mirror: Mirror | None = None
    # The weights a new run starts from (settings.from_model), read by train_fold itself.
    warm_start: WarmStart | None = None


@dataclass(frozen=True)
class _Control:
    """How a running fold reports and is stopped: its log (main rank only) and stop request."""

    stop: StopRequest
    log: RunLog | None


def split_for(job: TrainingJob) -> tuple[list[str], list[str]]:
    """The fold's (train, validation) case ids from splits_final.json (created if missing)."""
    cases = case_ids(job.data_dir)
    if not cases:
        raise AutoSegError(f"{job.data_dir}: no preprocessed cases found")
    if job.fold == "all":  # no split file needed (and none can be made for < 5 cases)
        return fold_cases([], "all", cases)
    splits = load_or_create_splits(job.preprocessed_dir, cases)
    return fold_cases(splits, job.fold, cases)


@contextlib.contextmanager
def _fold_lock(job: TrainingJob, options: RunOptions, dist: DistributedContext) -> Iterator[None]:
    """The main rank holds the fold lock; a stop request left from an earlier run is dropped."""
    if not dist.is_main:
        yield
        return
    with acquire_fold_lock(job.fold_dir, options.command):
        clear_stop_request(job.fold_dir)
        yield


def _log_lines(log: RunLog | None, lines: list[str]) -> None:
    if log is not None:
        for line in lines:
            log.message(line)


def _prepare_folders(job: TrainingJob, options: RunOptions, dist: DistributedContext) -> None:
    if not dist.is_main:
        return
    job.write_model_files()
    job.fold_dir.mkdir(parents=True, exist_ok=True)
    if not options.validation_only:
        job.settings.save(job.fold_dir / SETTINGS_FILE)
    summary = describe_network(
        job.config.architecture,
        job.num_input_channels,
        job.dataset.labels.num_segmentation_heads,
        job.config.patch_size,
    )
    (job.fold_dir / "network.txt").write_text(summary + "\n", encoding="utf-8")


def _seed_everything(job: TrainingJob) -> int:
    seed = job.settings.seed if job.settings.seed is not None else random.randrange(2**31)
    torch.manual_seed(seed)
    return seed


def train_fold(
    job: TrainingJob, options: RunOptions = RunOptions(), dist: DistributedContext | None = None
) -> dict[str, Any] | None:
    """Train (or resume, or only validate) one fold; returns the validation summary on rank 0.

    Raises ``TrainingStopped`` after a stop request (the latest checkpoint is written),
    ``KeyboardInterrupt`` after SIGINT/SIGTERM, ``FoldLocked`` when another run holds the fold
    and ``OutOfMemory`` when an allocation failed.
    """
    dist = dist or DistributedContext()
    if options.pretrained_weights and options.resume:
        raise AutoSegError("-pretrained_weights cannot be combined with --c (resume)")
    check_warm_start(job, options)
    if job.settings.cpu_threads:
        torch.set_num_threads(job.settings.cpu_threads)
    job.check_inputs()
    with _fold_lock(job, options, dist):
        stop = StopRequest(job.fold_dir)
        job, kept = keep_previous_model_on_ranks(job, options, dist)
        _prepare_folders(job, options, dist)
        split = split_for(job)
        state = resume_state(job, options)
        if state is None and job.settings.from_model and not options.validation_only:
            options = replace(options, warm_start=load_warm_start(job))
        if dist.is_main and not options.validation_only:
            record_fold_cases(job.fold_dir, *split)  # what a later model compares against
        if options.validation_only:
            validate = _validate_only
            return _out_of_memory_told(None, validate, job, state, split[1], options, dist, stop)
        log = (
            RunLog(job.fold_dir, echo=options.echo, mirror=options.mirror) if dist.is_main else None
        )
        if log and kept:
            log.message(f"The previous model of this folder is kept as {kept}")
            log.event("version_kept", version=str(kept))
        try:
            control = _Control(stop, log)
            return _out_of_memory_told(log, _train, job, split, state, options, dist, control)
        finally:
            if log:
                log.close()


def _out_of_memory_told(log: RunLog | None, work: Callable[..., Any], *args: Any) -> Any:
    """Run ``work``; its failure becomes an ``error`` event, an allocation failure ``OutOfMemory``."""
    try:
        return work(*args)
    except TrainingStopped:
        raise
    except Exception as error:
        failure = (
            out_of_memory(error, "Training", TRAINING_ADVICE) if is_out_of_memory(error) else None
        )
        if log:
            kind = {"kind": OUT_OF_MEMORY} if failure else {}
            log.event("error", message=str(failure or f"{type(error).__name__}: {error}"), **kind)
        if failure is not None:
            raise failure from error
        raise


def _acknowledge(log: RunLog | None) -> Callable[[str], None] | None:
    """The ``stopping`` event, written as soon as a stop request is seen (the loop may still be
    in a long iteration: the user learns at once that the request arrived)."""
    if log is None:
        return None
    return lambda reason: log.event("stopping", reason=reason)


def _train(
    job: TrainingJob,
    split: tuple[list[str], list[str]],
    state: dict[str, Any] | None,
    options: RunOptions,
    dist: DistributedContext,
    control: _Control,
) -> dict[str, Any] | None:
    """The loop and the final validation, while the stop-request file is watched."""
    start_epoch = int(state["current_epoch"]) if state is not None else 0
    parts = build_training_parts(job, split, dist, _seed_everything(job), start_epoch)
    stop, log = control.stop, control.log
    with stop.watching(_acknowledge(log)):
        try:
            with stop.signals():
                trainer = Trainer(job, parts, log, dist, LoopState(stop=stop))
                warm_lines = first_weights(trainer, state, options)
                _log_start(log, job, trainer.state.next_epoch, len(split[0]), len(split[1]))
                _log_lines(log, warm_lines)
                trainer.fit()
        except StopRequested:
            _stopped(control, job, "training", trainer.state.next_epoch)
        finally:
            parts.close()
        setup = ValidationSetup(parts.device, parts.mirror_axes, options.save_npz)
        summary = _stoppable_validation(job, parts.model, split[1], setup, dist, control)
        if summary is not None:  # a warm start: the new model against the one it started from
            compare_after_warm_start(job, parts.model, split[1], setup, log)
    _log_end(log, summary, job)
    return summary


def _stoppable_validation(
    job: TrainingJob,
    model: torch.nn.Module,
    val_cases: list[str],
    setup: ValidationSetup,
    dist: DistributedContext,
    control: _Control,
) -> dict[str, Any] | None:
    """The final validation; a stop request (file) interrupts it, as it polls no flag."""
    stop = control.stop
    try:
        with stop.interrupting():
            if stop.is_set():  # asked after the last iteration: do not start the validation
                _stopped(control, job, "validation", job.settings.epochs)
            return run_final_validation(job, model, val_cases, setup, dist)
    except KeyboardInterrupt:
        if not stop.by_file:
            raise
        _stopped(control, job, "validation", job.settings.epochs)


def _stopped(control: _Control, job: TrainingJob, phase: str, next_epoch: int) -> NoReturn:
    """Record the stop and end the run: ``TrainingStopped`` for a request, KeyboardInterrupt
    (exit 130, as always) for a signal."""
    kept = job.fold_dir / (LATEST if phase == "training" else FINAL)
    saved = kept.is_file() and job.settings.save_checkpoints
    if phase == "training":
        what = f"{kept.name} holds the state at epoch {next_epoch}; resume with --c"
        if not saved:
            what = "no checkpoint was written (checkpointing is disabled)"
    else:
        what = f"the training is complete ({kept.name}); redo the validation with --val"
    stop, log = control.stop, control.log
    message = f"{job.fold_dir}: {phase} stopped ({stop.reason}); {what}"
    if log:
        log.message(message)
        log.event(
            "stopped",
            reason=stop.reason,
            phase=phase,
            next_epoch=next_epoch,
            checkpoint=str(kept) if saved else None,
            message=message,
        )
    if stop.by_file:
        clear_stop_request(job.fold_dir)  # honoured: leave the folder as a finished run would
        raise TrainingStopped(message)
    raise KeyboardInterrupt


def _validate_only(
    job: TrainingJob,
    state: dict[str, Any],
    val_cases: list[str],
    options: RunOptions,
    dist: DistributedContext,
    stop: StopRequest,
) -> dict[str, Any] | None:
    device = dist.device or resolve_device(job.settings.device)
    model = build_network_for(job).to(device)
    model.load_state_dict(state["network_weights"])
    axes = state.get("inference_allowed_mirroring_axes") or []
    setup = ValidationSetup(device, tuple(axes), options.save_npz)
    with stop.watching():
        summary = _stoppable_validation(job, model, val_cases, setup, dist, _Control(stop, None))
    if summary is not None and options.echo:
        print(f"Mean validation Dice: {validation_dice(summary):.4f}", file=options.echo)
    return summary


def _log_start(log: RunLog | None, job: TrainingJob, next_epoch: int, n_train: int, n_val: int):
    if log is None:
        return
    log.start(
        {
            "fold": job.fold,
            "configuration": job.configuration,
            "dataset": job.preprocessed_dir.name,
            "epochs": job.settings.epochs,
            "iterations_per_epoch": job.settings.iterations_per_epoch,
            "resumed_from_epoch": next_epoch if next_epoch else None,
            "train_cases": n_train,
            "val_cases": n_val,
            "settings": job.settings.to_json(),
        }
    )


def _log_end(log: RunLog | None, summary: dict[str, Any] | None, job: TrainingJob) -> None:
    if log is None or summary is None:
        return
    dice = validation_dice(summary)
    log.event(
        "validation", summary=str(job.fold_dir / "validation" / "summary.json"), mean_fg_dice=dice
    )
    log.message(f"Mean validation Dice: {dice:.4f}")
    log.event("end", status="finished")
