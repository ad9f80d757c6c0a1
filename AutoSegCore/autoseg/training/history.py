"""Per-epoch training history: what the progress plot, the run log and checkpoints share.

The history is stored inside every checkpoint so that a resumed run continues its curves and its
best-EMA bookkeeping exactly where the checkpoint left off. It is kept as plain lists of Python
numbers (one entry per epoch) so that it serialises to strict JSON: NaN (a class never seen in the
online validation, a diverged loss) is written as ``null`` and read back as NaN.

Epochs are numbered from 0 and stored contiguously, so index ``i`` of every list is epoch ``i``;
``append`` enforces this, which makes ``truncate(n)`` ("keep epochs 0..n-1") unambiguous.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autoseg.errors import AutoSegError

_SCALAR_FIELDS = (
    "train_loss",
    "val_loss",
    "mean_fg_dice",
    "ema_fg_dice",
    "lr",
    "epoch_start",
    "epoch_end",
)


@dataclass(frozen=True)
class EpochRecord:
    """Everything logged for one finished epoch (times are ``time.time()`` timestamps)."""

    epoch: int
    train_loss: float
    val_loss: float
    pseudo_dice: tuple[float, ...]
    mean_fg_dice: float
    ema_fg_dice: float
    lr: float
    epoch_start: float
    epoch_end: float

    @property
    def epoch_time(self) -> float:
        """Wall-clock duration of the epoch in seconds."""
        return self.epoch_end - self.epoch_start


def _is_better(value: float, best: float | None) -> bool:
    """Strict improvement; NaN never improves, so a run whose first EMA is NaN can still recover."""
    return not math.isnan(value) and (best is None or value > best)


def _to_json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def _from_json_number(value: float | None) -> float:
    return math.nan if value is None else float(value)


@dataclass
class TrainingHistory:
    """Parallel per-epoch lists plus the best EMA pseudo Dice seen so far (``None`` before any)."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    pseudo_dice: list[list[float]] = field(default_factory=list)
    mean_fg_dice: list[float] = field(default_factory=list)
    ema_fg_dice: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    epoch_start: list[float] = field(default_factory=list)
    epoch_end: list[float] = field(default_factory=list)
    best_ema: float | None = None

    def __len__(self) -> int:
        return len(self.epoch)

    def append(self, record: EpochRecord) -> bool:
        """Add one epoch; returns True when its EMA pseudo Dice is a new best (strictly greater).

        Values are converted to plain ``float`` so numpy or torch scalars never reach the JSON.
        """
        if record.epoch != len(self):
            raise ValueError(
                f"epoch {record.epoch} cannot follow a history of {len(self)} epochs; "
                f"expected epoch {len(self)} (truncate the history when resuming)"
            )
        self.epoch.append(int(record.epoch))
        self.pseudo_dice.append([float(d) for d in record.pseudo_dice])
        for name in _SCALAR_FIELDS:
            getattr(self, name).append(float(getattr(record, name)))
        new_best = _is_better(self.ema_fg_dice[-1], self.best_ema)
        if new_best:
            self.best_ema = self.ema_fg_dice[-1]
        return new_best

    def record(self, i: int) -> EpochRecord:
        """The epoch at index ``i`` as an ``EpochRecord`` (negative indices count from the end)."""
        scalars = {name: getattr(self, name)[i] for name in _SCALAR_FIELDS}
        return EpochRecord(epoch=self.epoch[i], pseudo_dice=tuple(self.pseudo_dice[i]), **scalars)

    def epoch_time(self, i: int) -> float:
        """Wall-clock duration of the epoch at index ``i`` in seconds."""
        return self.epoch_end[i] - self.epoch_start[i]

    def truncate(self, n_epochs: int) -> None:
        """Keep epochs ``0 .. n_epochs-1``: resuming from a checkpoint older than the log.

        ``best_ema`` is recomputed from the kept epochs so that a later, discarded best does not
        stop the resumed run from saving its own best checkpoint.
        """
        if not 0 <= n_epochs <= len(self):
            raise ValueError(f"cannot truncate a history of {len(self)} epochs to {n_epochs}")
        for name in ("epoch", "pseudo_dice", *_SCALAR_FIELDS):
            del getattr(self, name)[n_epochs:]
        self.best_ema = None
        for value in self.ema_fg_dice:
            if _is_better(value, self.best_ema):
                self.best_ema = value

    def to_json(self) -> dict[str, Any]:
        """A strict-JSON dict (NaN as ``None``) holding every list and ``best_ema``."""
        data: dict[str, Any] = {"epoch": list(self.epoch)}
        for name in _SCALAR_FIELDS:
            data[name] = [_to_json_number(v) for v in getattr(self, name)]
        data["pseudo_dice"] = [[_to_json_number(v) for v in row] for row in self.pseudo_dice]
        best = self.best_ema
        data["best_ema"] = None if best is None or math.isnan(best) else best
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrainingHistory:
        """Rebuild a history written by ``to_json`` (``None`` becomes NaN again)."""
        names = ("epoch", "pseudo_dice", *_SCALAR_FIELDS)
        missing = [name for name in (*names, "best_ema") if name not in data]
        if missing:
            raise AutoSegError(
                f"The training history is missing {', '.join(missing)}. The checkpoint or log was "
                "not written by AutoSeg or is damaged; start the training again without resuming."
            )
        lengths = {name: len(data[name]) for name in names}
        if len(set(lengths.values())) > 1 or list(data["epoch"]) != list(range(len(data["epoch"]))):
            raise AutoSegError(
                f"The training history is inconsistent (list lengths {lengths}; epochs must run "
                "0, 1, 2, ...). The checkpoint or log is damaged; start the training again "
                "without resuming."
            )
        history = cls(
            epoch=[int(e) for e in data["epoch"]],
            pseudo_dice=[[_from_json_number(v) for v in row] for row in data["pseudo_dice"]],
            best_ema=None if data["best_ema"] is None else float(data["best_ema"]),
        )
        for name in _SCALAR_FIELDS:
            setattr(history, name, [_from_json_number(v) for v in data[name]])
        return history
