"""The training loop: epochs of SGD steps, online pseudo-Dice validation, EMA model selection.

Everything a run is made of comes in through ``TrainingParts`` (see recipe.py); this class only
loops, logs and checkpoints. A stop request (the fold's stop-request file or SIGINT/SIGTERM, see
stop_request.py) ends the loop after the current iteration and writes ``checkpoint_latest.pth``;
the interrupted epoch is trained again on resume.

Crash safety: besides every ``checkpoint_every`` epochs, ``checkpoint_latest.pth`` is written when
``checkpoint_minutes`` passed since the last one. That is checked at the end of every epoch (the
checkpoint then resumes exactly there) and, once an epoch itself has run longer than that, after
every iteration (slow CPU epochs: such a checkpoint restarts the epoch on resume, like a stop).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from autoseg.checkpoint import BEST, FINAL, LATEST, save_checkpoint, unwrap_state_dict
from autoseg.training.distributed import DistributedContext
from autoseg.training.history import EpochRecord, TrainingHistory
from autoseg.training.job import TRAINER_NAME, TrainingJob
from autoseg.training.online_metrics import PseudoDice, dice_counts, ema_update
from autoseg.training.progress_plot import plot_progress
from autoseg.training.recipe import TrainingParts, epochs_left_estimate, poly_lr
from autoseg.training.run_log import RunLog


class StopRequested(Exception):
    """Raised out of the loop after a stop request, once the latest checkpoint is written."""


@dataclass
class LoopState:
    """What survives a restart besides the weights: the next epoch, history and best EMA."""

    next_epoch: int = 0
    history: TrainingHistory = field(default_factory=TrainingHistory)
    stop: Callable[[], bool] = lambda: False


def _as_float(outputs: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
    """Losses are computed in fp32 whatever precision the network ran in."""
    if isinstance(outputs, list | tuple):
        return [o.float() for o in outputs]
    return outputs.float()


class Trainer:
    """Runs epochs for one fold; resumable from any checkpoint it wrote."""

    # Seconds for the time-based checkpoint; a class attribute so that tests can replace it.
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(
        self,
        job: TrainingJob,
        parts: TrainingParts,
        log: RunLog | None,
        dist: DistributedContext,
        state: LoopState,
    ) -> None:
        self.job, self.parts, self.log, self.dist, self.state = job, parts, log, dist, state
        self.settings = job.settings
        self._last_latest = self.clock()
        self.regions = job.dataset.labels.has_regions
        self.ignore_label = job.dataset.labels.ignore_label
        # Loss scaling is needed for fp16 only; bf16 has fp32's exponent range.
        self.scaler = torch.amp.GradScaler("cuda") if parts.amp_dtype == torch.float16 else None

    # ----------------------------------------------------------------------------- one step

    def _to_device(self, batch: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        device = self.parts.device
        data = batch["data"].to(device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):
            return data, [t.to(device, non_blocking=True) for t in target]
        return data, target.to(device, non_blocking=True)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.parts.amp_dtype is not None:
            return torch.autocast(self.parts.device.type, dtype=self.parts.amp_dtype)
        return contextlib.nullcontext()

    def train_step(self, batch: dict[str, Any]) -> float:
        data, target = self._to_device(batch)
        optimizer = self.parts.optimizer
        optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            outputs = self.parts.network(data)
        loss = self.parts.loss(_as_float(outputs), target)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.parts.model.parameters(), self.settings.grad_clip)
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.parts.model.parameters(), self.settings.grad_clip)
            optimizer.step()
        return float(loss.detach())

    def validation_step(self, batch: dict[str, Any], dice: PseudoDice) -> float:
        data, target = self._to_device(batch)
        with self._autocast():
            outputs = _as_float(self.parts.network(data))
        loss = self.parts.loss(outputs, target)
        top = outputs[0] if isinstance(outputs, list) else outputs
        top_target = target[0] if isinstance(target, list) else target
        counts = dice_counts(top, top_target, regions=self.regions, ignore_label=self.ignore_label)
        dice.add(*(self.dist.sum(c) for c in counts))
        return float(loss.detach())

    # ----------------------------------------------------------------------------- one epoch

    def _stop_now(self) -> bool:
        requested = self.state.stop()
        if self.dist.enabled:  # every rank must leave at the same iteration (collectives)
            return self.dist.mean_of(float(requested)) > 0
        return requested

    def _latest_due(self, since: float) -> bool:
        """The time-based checkpoint is due and ``since`` is at least that long ago."""
        minutes = self.settings.checkpoint_minutes
        now = self.clock()
        return minutes > 0 and now - max(self._last_latest, since) >= minutes * 60

    def _train_epoch(self) -> float:
        self.parts.network.train()
        losses = []
        epoch_start = self.clock()
        for _ in range(self.settings.iterations_per_epoch):
            losses.append(self.train_step(next(self.parts.train_batches)))
            if self._stop_now():
                raise StopRequested
            if self._latest_due(epoch_start):  # a long epoch: save within it
                self.save(LATEST, self.state.next_epoch)
        return self.dist.mean_of(float(np.mean(losses)))

    def _validate_epoch(self) -> tuple[float, PseudoDice]:
        self.parts.network.eval()
        dice = PseudoDice()
        losses = []
        with torch.no_grad():
            for _ in range(self.settings.val_iterations):
                losses.append(self.validation_step(next(self.parts.val_batches), dice))
        mean_loss = float(np.mean(losses)) if losses else math.nan
        return self.dist.mean_of(mean_loss), dice

    def run_epoch(self, epoch: int) -> EpochRecord:
        lr = poly_lr(
            self.settings.initial_lr, epoch, self.settings.epochs, self.settings.poly_exponent
        )
        for group in self.parts.optimizer.param_groups:
            group["lr"] = lr
        if self.parts.reseed is not None:
            self.parts.reseed(epoch)
        start = time.time()
        train_loss = self._train_epoch()
        val_loss, dice = self._validate_epoch()
        mean_dice = dice.mean()
        previous = self.state.history.ema_fg_dice[-1] if self.state.history.ema_fg_dice else None
        if previous is None or math.isnan(previous):  # start the EMA at the first real value
            ema = mean_dice
        else:
            ema = ema_update(previous, mean_dice, self.settings.ema_momentum)
        return EpochRecord(
            epoch=epoch,
            train_loss=train_loss,
            val_loss=val_loss,
            pseudo_dice=tuple(dice.dice_per_class()),
            mean_fg_dice=mean_dice,
            ema_fg_dice=ema,
            lr=lr,
            epoch_start=start,
            epoch_end=time.time(),
        )

    # ----------------------------------------------------------------------------- the loop

    def checkpoint_state(self, next_epoch: int) -> dict[str, Any]:
        return {
            "network_weights": unwrap_state_dict(self.parts.model),
            "optimizer_state": self.parts.optimizer.state_dict(),
            "grad_scaler_state": self.scaler.state_dict() if self.scaler else None,
            "history": self.state.history.to_json(),
            "best_ema": self.state.history.best_ema,
            "current_epoch": next_epoch,
            "trainer_name": TRAINER_NAME,
            "configuration": self.job.configuration,
            "plans_name": self.job.plans.plans_name,
            "fold": self.job.fold,
            "settings": self.settings.to_json(),
            "inference_allowed_mirroring_axes": list(self.parts.mirror_axes),
        }

    def save(self, name: str, next_epoch: int) -> None:
        if not (self.dist.is_main and self.settings.save_checkpoints):
            return
        path = self.job.fold_dir / name
        save_checkpoint(path, self.checkpoint_state(next_epoch))
        if name == LATEST:
            self._last_latest = self.clock()
        if self.log:
            self.log.event("checkpoint", kind=name.removesuffix(".pth"), path=str(path))

    def _after_epoch(self, record: EpochRecord) -> None:
        history = self.state.history
        new_best = history.append(record)
        if new_best:
            self.save(BEST, record.epoch + 1)
        epochs = self.settings.epochs
        due = (record.epoch + 1) % self.settings.checkpoint_every == 0
        if (due or self._latest_due(self._last_latest)) and record.epoch + 1 < epochs:
            self.save(LATEST, record.epoch + 1)
        if self.log and self.dist.is_main:
            times = [history.epoch_time(i) for i in range(len(history.epoch))]
            eta = epochs_left_estimate(times, epochs - record.epoch - 1)
            self.log.epoch(record, epochs=epochs, new_best=new_best, eta_seconds=eta)
            plot_progress(history, self.job.fold_dir / "progress.png")

    def fit(self) -> None:
        """Train from ``state.next_epoch`` to the last epoch, then write the final checkpoint."""
        try:
            for epoch in range(self.state.next_epoch, self.settings.epochs):
                self._after_epoch(self.run_epoch(epoch))
                self.state.next_epoch = epoch + 1
                if self._stop_now():
                    raise StopRequested
        except StopRequested:
            # The interrupted epoch restarts on resume; finished epochs are kept.
            self.save(LATEST, self.state.next_epoch)
            raise
        self.save(FINAL, self.settings.epochs)
        latest = self.job.fold_dir / LATEST
        if self.dist.is_main and latest.is_file():
            latest.unlink()
