"""The cells of the Train module's progress table, one row per step of a training run.

Kept out of the module file so that what the user reads (epoch k/N, losses, pseudo Dice, time
left) is decided and tested without Qt; the widget only copies the strings into a QTableWidget.
"""

from __future__ import annotations

from pathlib import Path

from AutoSegTrainLib.fold_status import FoldProgress, FoldStatus, fold_status, format_duration
from AutoSegTrainLib.training_plan import TrainingRequest
from AutoSegTrainLib.training_runs import StepSnapshot

COLUMNS = ("Step", "State", "Epoch", "Train loss", "Val loss", "Pseudo Dice", "EMA", "Time left")


def _number(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _fold_cells(progress: FoldProgress) -> tuple[str, ...]:
    epoch = f"{progress.epochs_done}/{progress.epochs}" if progress.epochs else ""
    eta = progress.eta_seconds
    return (
        epoch,
        _number(progress.train_loss),
        _number(progress.val_loss),
        _number(progress.mean_fg_dice),
        _number(progress.ema_fg_dice),
        format_duration(eta) if eta is not None and progress.phase == "training" else "",
    )


def step_row(step: StepSnapshot) -> tuple[str, ...]:
    """The row for one step; planning shows its stage and count in the epoch column."""
    gpu = f" (GPU {step.gpu})" if step.gpu is not None else ""
    state = step.state
    if step.state == "running" and step.fold_progress is not None:
        state = step.fold_progress.phase
    if step.fold_progress is not None:
        details = _fold_cells(step.fold_progress)
    elif step.plan_progress is not None:
        plan = step.plan_progress
        details = (f"{plan.stage} {plan.done}/{plan.total}", "", "", "", "", "")
    else:
        details = ("",) * 6
    return (step.label + gpu, state, *details)


def status_row(label: str, status: FoldStatus) -> tuple[str, ...]:
    """A row for a fold read from its folder (no run going: after a restart, or when done)."""
    return (label, status.state, *_fold_cells(status.progress))


def fold_status_rows(results_root: Path, request: TrainingRequest) -> list[tuple[str, ...]]:
    """One row per requested fold from what its folder says (no run going, e.g. after a
    restart: the user sees which folds are done and which will resume)."""
    rows = []
    for configuration in request.configurations:
        for fold in request.folds:
            status = fold_status(results_root, request.dataset, configuration, fold)
            rows.append(status_row(f"{configuration} fold {fold}", status))
    return rows
