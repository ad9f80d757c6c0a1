"""The online validation metric: "pseudo Dice" over validation patches and its moving average.

During training, the validation patches of an epoch are scored as if they were one volume: the
hard prediction's TP/FP/FN are summed over batch, space and all validation batches, and Dice per
class is computed once at the end ("global Dice"). It is cheap and stable, but only a proxy (patches,
no sliding window); the real metric comes from the final validation. The exponential moving average
of its foreground mean decides which checkpoint is "best".
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["PseudoDice", "dice_counts", "ema_update"]


def _label_counts(
    logits: Tensor, target: Tensor, ignore_label: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Counts from a ``pred x ref`` confusion matrix, one bincount instead of C one-hot masks."""
    n_classes = logits.shape[1]
    if target.ndim == logits.ndim:
        target = target[:, 0]
    target = target.long()
    index = logits.argmax(1) * n_classes + target
    size = n_classes * n_classes
    if ignore_label is not None:
        index = torch.where(target == ignore_label, size, index)  # an extra bin, dropped below
    matrix = torch.bincount(index.flatten(), minlength=size + 1)[:size].view(n_classes, n_classes)
    tp = matrix.diagonal()
    fp = matrix.sum(1) - tp
    fn = matrix.sum(0) - tp
    return tp[1:], fp[1:], fn[1:]


def _region_counts(
    logits: Tensor, target: Tensor, ignore_label: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    prediction = logits > 0  # sigmoid(x) > 0.5 without computing the sigmoid
    truth = target != 0
    if ignore_label is not None:
        annotated = ~truth[:, -1:]
        truth = truth[:, :-1] & annotated
        prediction = prediction & annotated
    axes = (0, *range(2, logits.ndim))
    tp = (prediction & truth).sum(axes)
    fp = (prediction & ~truth).sum(axes)
    fn = (~prediction & truth).sum(axes)
    return tp, fp, fn


def dice_counts(
    logits: Tensor, target: Tensor, *, regions: bool, ignore_label: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """TP, FP, FN (int64, one entry per foreground class or region) summed over batch and space.

    Label mode: hard prediction = argmax; ``target`` ``(b, 1, ...)`` integer labels; background is
    excluded. Region mode: prediction = sigmoid > 0.5; ``target`` ``(b, R[+1], ...)`` with the
    ignore channel last when the dataset has an ignore label. Ignored voxels count nowhere.
    """
    with torch.no_grad():
        if regions:
            return _region_counts(logits, target, ignore_label)
        return _label_counts(logits, target, ignore_label)


def _as_counts(values: Tensor | np.ndarray | list[int]) -> Tensor:
    return torch.as_tensor(values).detach().to(torch.int64)


class PseudoDice:
    """Accumulates TP/FP/FN over validation batches; Dice per class = 2TP / (2TP + FP + FN).

    Counts stay on their device until read, so adding a batch never waits for the GPU.
    """

    def __init__(self) -> None:
        self._counts: tuple[Tensor, Tensor, Tensor] | None = None

    def add(
        self, tp: Tensor | np.ndarray, fp: Tensor | np.ndarray, fn: Tensor | np.ndarray
    ) -> None:
        new = (_as_counts(tp), _as_counts(fp), _as_counts(fn))
        if self._counts is None:
            self._counts = new
            return
        tp0, fp0, fn0 = self._counts
        self._counts = (tp0 + new[0], fp0 + new[1], fn0 + new[2])

    def dice_per_class(self) -> list[float]:
        """Dice per foreground class/region; NaN for one never seen in prediction or reference."""
        if self._counts is None:
            return []
        tp, fp, fn = (c.cpu().numpy().astype(np.float64) for c in self._counts)
        denominator = 2 * tp + fp + fn
        dice = np.full(tp.shape, np.nan)
        np.divide(2 * tp, denominator, out=dice, where=denominator > 0)
        return [float(v) for v in dice]

    def mean(self) -> float:
        """Mean over classes ignoring NaN (NaN when no class was ever seen)."""
        values = [v for v in self.dice_per_class() if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan


def ema_update(previous: float | None, value: float, momentum: float = 0.9) -> float:
    """``momentum * previous + (1 - momentum) * value``; the first value starts the average.

    NaN never poisons the average: a NaN previous value restarts it, a NaN new value keeps it (a
    NaN EMA would otherwise block every later "new best" checkpoint).
    """
    if previous is None or math.isnan(previous):
        return float(value)
    if math.isnan(value):
        return float(previous)
    return momentum * previous + (1 - momentum) * value
