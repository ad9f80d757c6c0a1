"""The state of one training fold, read from its folder alone (so it survives a Slicer restart).

Why from files: the Train module must show which folds are finished, which can be resumed with
``--c`` and how far they got, also for folds trained in an earlier session or on the command line.
The checkpoint files say what can be done next; ``events.jsonl`` (written by the engine's
``RunLog``) says how far training went. ``FoldProgress`` is the fold's state folded from those
events; ``TrainingRun`` updates the same structure live while it follows a running fold.

Only torch-free engine modules are imported here (a test checks that): checkpoint names live in
``autoseg.checkpoint``, which imports torch, so they are repeated below and a test compares them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from autoseg.planning.presets import DEFAULT_PLANS_NAME
from autoseg.results_layout import (
    BEST_CHECKPOINT,
    FINAL_CHECKPOINT,
    LATEST_CHECKPOINT,
    fold_folder_name,
    model_folder_name,
)
from autoseg.training.fold_lock import holder_gone, read_lock
from autoseg.training.job import TRAINER_NAME
from autoseg.training.run_log import EVENTS_FILE
from AutoSegCoreLib.process_runner import follow_jsonl

# Same values as the engine's progress plot and validation folder (those modules import torch);
# test_fold_status checks they stay equal.
PROGRESS_PNG = "progress.png"
VALIDATION_FOLDER = "validation"
VALIDATION_SUMMARY = "summary.json"
# How many recent epoch durations the ETA averages: recent enough to follow a change of speed
# (another job on the GPU), long enough to smooth out the slow first epoch.
RECENT_EPOCHS = 10

FoldState = Literal["not started", "interrupted", "done"]
# "stopping": a stop request was seen, the run finishes its iteration and saves its checkpoint.
Phase = Literal[
    "not started",
    "starting",
    "training",
    "validating",
    "stopping",
    "finished",
    "interrupted",
    "error",
]
STOPPING_MESSAGE = "saving checkpoint"


def _number(value: Any) -> float | None:
    """A finite float, or None for JSON null (the engine writes NaN as null) and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


@dataclass(frozen=True)
class FoldProgress:
    """How far one fold's training got, folded from its ``events.jsonl`` events.

    ``epochs_done`` counts finished epochs (the engine numbers epochs from 0, so it is the last
    epoch's number + 1); ``epochs`` is the planned total. Losses and Dice values are those of the
    last finished epoch; ``None`` means not reported yet (or NaN in the engine).
    """

    phase: Phase = "not started"
    epochs_done: int = 0
    epochs: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    pseudo_dice: tuple[float | None, ...] = ()
    mean_fg_dice: float | None = None
    ema_fg_dice: float | None = None
    best_ema: float | None = None
    epoch_time: float | None = None
    recent_epoch_times: tuple[float, ...] = ()
    validation_dice: float | None = None
    message: str | None = None
    progress_png: Path | None = None

    @property
    def eta_seconds(self) -> float | None:
        """Remaining epochs x the mean duration of the recent epochs; None before the first."""
        if self.epochs is None or not self.recent_epoch_times:
            return None
        mean = sum(self.recent_epoch_times) / len(self.recent_epoch_times)
        return max(self.epochs - self.epochs_done, 0) * mean

    @property
    def fraction(self) -> float:
        """Finished share of the planned epochs, 0..1 (for a progress bar)."""
        if not self.epochs:
            return 0.0
        return min(self.epochs_done / self.epochs, 1.0)

    def text(self) -> str:
        """One short line for the module: phase, epoch k of N, EMA and time left."""
        parts = [self.phase]
        if self.epochs is not None:
            parts.append(f"epoch {self.epochs_done}/{self.epochs}")
        if self.ema_fg_dice is not None:
            parts.append(f"EMA Dice {self.ema_fg_dice:.4f}")
        eta = self.eta_seconds
        if self.phase == "training" and eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        if self.message:
            parts.append(self.message)
        return ", ".join(parts)


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` for a number of seconds."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _on_start(progress: FoldProgress, event: Mapping[str, Any]) -> FoldProgress:
    # A resumed run restarts at the checkpoint's epoch: epochs the killed run logged after its
    # last checkpoint are trained again, so they no longer count.
    resumed = event.get("resumed_from_epoch")
    epochs = event.get("epochs")
    return replace(
        progress,
        phase="training",
        epochs_done=resumed if isinstance(resumed, int) else 0,
        epochs=epochs if isinstance(epochs, int) else progress.epochs,
        message=None,
    )


def _on_epoch(progress: FoldProgress, event: Mapping[str, Any]) -> FoldProgress:
    epoch = event.get("epoch")
    epochs = event.get("epochs")
    ema = _number(event.get("ema_fg_dice"))
    best = progress.best_ema
    if ema is not None and (best is None or ema > best):
        best = ema
    epoch_time = _number(event.get("epoch_time"))
    recent = progress.recent_epoch_times
    if epoch_time is not None:
        recent = (*recent, epoch_time)[-RECENT_EPOCHS:]
    dice = event.get("pseudo_dice")
    return replace(
        progress,
        phase="training",
        epochs_done=epoch + 1 if isinstance(epoch, int) else progress.epochs_done,
        epochs=epochs if isinstance(epochs, int) else progress.epochs,
        train_loss=_number(event.get("train_loss")),
        val_loss=_number(event.get("val_loss")),
        pseudo_dice=tuple(_number(d) for d in dice) if isinstance(dice, list) else (),
        mean_fg_dice=_number(event.get("mean_fg_dice")),
        ema_fg_dice=ema,
        best_ema=best,
        epoch_time=epoch_time,
        recent_epoch_times=recent,
    )


def _on_checkpoint(progress: FoldProgress, event: Mapping[str, Any]) -> FoldProgress:
    # The final checkpoint is written right before the final validation starts.
    final = event.get("kind") == FINAL_CHECKPOINT.removesuffix(".pth")
    return replace(progress, phase="validating") if final else progress


def _on_validation(progress: FoldProgress, event: Mapping[str, Any]) -> FoldProgress:
    return replace(progress, validation_dice=_number(event.get("mean_fg_dice")))


def _on_end(progress: FoldProgress, event: Mapping[str, Any]) -> FoldProgress:
    finished = event.get("status") == "finished"
    return replace(progress, phase="finished" if finished else "interrupted")


def _on_error(progress: FoldProgress, event: Mapping[str, Any]) -> FoldProgress:
    return replace(progress, phase="error", message=str(event.get("message", "")))


def _on_stopping(progress: FoldProgress, event: Mapping[str, Any]) -> FoldProgress:
    return replace(progress, phase="stopping", message=STOPPING_MESSAGE)


def _on_stopped(progress: FoldProgress, event: Mapping[str, Any]) -> FoldProgress:
    """A stop honoured by the engine: resumable from the epoch it names (or only unvalidated)."""
    next_epoch = event.get("next_epoch")
    if event.get("phase") == "validation":
        message = "stopped during the final validation"
    elif event.get("checkpoint") and isinstance(next_epoch, int):
        message = f"stopped, resumes at epoch {next_epoch}"
    else:
        message = "stopped"
    return replace(progress, phase="interrupted", message=message)


_HANDLERS = {
    "start": _on_start,
    "epoch": _on_epoch,
    "checkpoint": _on_checkpoint,
    "validation": _on_validation,
    "end": _on_end,
    "error": _on_error,
    "stopping": _on_stopping,
    "stopped": _on_stopped,
}


def update_progress(progress: FoldProgress, event: Mapping[str, Any]) -> FoldProgress:
    """The progress after one ``events.jsonl`` event; unknown events change nothing."""
    handler = _HANDLERS.get(str(event.get("event")))
    return progress if handler is None else handler(progress, event)


def fold_progress(
    events: Iterable[Mapping[str, Any]], start: FoldProgress | None = None
) -> FoldProgress:
    """Fold a sequence of events into the progress, from ``start`` (default: nothing yet)."""
    progress = start or FoldProgress()
    for event in events:
        progress = update_progress(progress, event)
    return progress


@dataclass(frozen=True)
class FoldStatus:
    """What a fold folder says about its training.

    ``state``: ``"done"`` (checkpoint_final exists), ``"interrupted"`` (latest or best
    checkpoint but no final: ``train ... --c`` resumes it) or ``"not started"``. ``validated``:
    the final validation finished (``validation/summary.json``), which find_best_configuration
    and the cascade's next stage need; a done fold without it is re-validated with ``--val``.
    ``locked_by``: who trains the fold right now (its lock: pid, host, start, command), e.g. a
    run left over from before a Slicer restart; None when no live run holds it.
    """

    fold_dir: Path
    state: FoldState
    validated: bool
    progress: FoldProgress
    locked_by: str | None = None

    @property
    def epochs_done(self) -> int:
        """Finished epochs seen in events.jsonl (last epoch number + 1)."""
        return self.progress.epochs_done

    @property
    def epochs(self) -> int | None:
        """Planned epochs, from the last start or epoch event."""
        return self.progress.epochs

    @property
    def best_ema(self) -> float | None:
        """Best EMA pseudo Dice seen in events.jsonl."""
        return self.progress.best_ema

    @property
    def progress_png(self) -> Path | None:
        """progress.png when it exists."""
        return self.progress.progress_png


def fold_folder(
    results_root: Path,
    dataset_name: str,
    configuration: str,
    fold: int | str,
    *,
    trainer: str = TRAINER_NAME,
    plans: str = DEFAULT_PLANS_NAME,
) -> Path:
    """``<results>/<dataset>/<trainer>__<plans>__<configuration>/fold_<k>``, as the engine names it."""
    model = model_folder_name(trainer, plans, configuration)
    return Path(results_root) / dataset_name / model / fold_folder_name(fold)


def fold_state(folder: Path) -> FoldState:
    """``done``, ``interrupted`` or ``not started`` from the checkpoint files of a fold folder."""
    if (folder / FINAL_CHECKPOINT).is_file():
        return "done"
    if (folder / LATEST_CHECKPOINT).is_file() or (folder / BEST_CHECKPOINT).is_file():
        return "interrupted"
    return "not started"


def read_fold_progress(folder: Path) -> tuple[FoldProgress, int]:
    """The progress from a fold folder's whole ``events.jsonl`` and the offset to follow it on."""
    events, offset = follow_jsonl(folder / EVENTS_FILE, 0)
    png = folder / PROGRESS_PNG
    start = FoldProgress(progress_png=png if png.is_file() else None)
    return fold_progress(events, start), offset


def fold_status(
    results_root: Path,
    dataset_name: str,
    configuration: str,
    fold: int | str,
    *,
    trainer: str = TRAINER_NAME,
    plans: str = DEFAULT_PLANS_NAME,
) -> FoldStatus:
    """The state of one fold from its files only; a missing folder is ``"not started"``."""
    folder = fold_folder(
        results_root, dataset_name, configuration, fold, trainer=trainer, plans=plans
    )
    progress, _ = read_fold_progress(folder)
    validated = (folder / VALIDATION_FOLDER / VALIDATION_SUMMARY).is_file()
    return FoldStatus(folder, fold_state(folder), validated, progress, fold_locked_by(folder))


def fold_locked_by(folder: Path) -> str | None:
    """Who holds the fold's lock (one line), or None when it is free or its holder is gone."""
    holder = read_lock(folder)
    return None if holder is None or holder_gone(holder) else holder.describe()
