"""Training losses: CE/BCE + soft Dice, deep supervision weighting and target downsampling.

Label mode (softmax outputs, one per label) uses cross-entropy + soft Dice without background; region
mode (one sigmoid output per region) uses BCE-with-logits + soft Dice with every channel. The Dice
term is ``-mean(dc)``, so a perfect prediction gives -1 and the total loss is usually negative.

An ignore label marks unannotated voxels: they must not pull the prediction in any direction, so
they are removed from every sum (Dice numerator and denominators, CE/BCE average) rather than being
treated as background.

Deep supervision: the decoder emits one output per resolution (highest first); each is compared with
the target downsampled to its size, weighted 1, 1/2, 1/4, ... with the coarsest output weighted 0
(it is still produced, so the network is unchanged, but costs no loss computation here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DeepSupervisionLoss",
    "SegmentationLoss",
    "SoftDiceLoss",
    "build_loss",
    "deep_supervision_scales",
    "deep_supervision_weights",
    "downsample_targets",
]

Nonlinearity = Literal["softmax", "sigmoid"] | None


def deep_supervision_scales(strides: Sequence[Sequence[int]]) -> list[tuple[float, ...]]:
    """Size of each deep-supervision output relative to the patch, highest resolution first.

    Stage ``s`` of the encoder has been downsampled by the product of the strides up to ``s``; the
    deepest stage has no decoder output, so it is dropped. With the usual stride 1 for stage 0 the
    first scale is all 1.0.
    """
    cumulative = np.cumprod(np.asarray(strides, dtype=np.float64), axis=0)
    return [tuple(float(v) for v in 1.0 / row) for row in cumulative[:-1]]


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """Loss weight per output: 1/2^i, the coarsest set to 0, normalised to sum 1.

    A single output (deep supervision effectively off) gets weight 1, since zeroing the only output
    would leave no loss at all.
    """
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
    if n_outputs == 1:
        return [1.0]
    weights = np.array([0.5**i for i in range(n_outputs)])
    weights[-1] = 0.0
    return [float(w) for w in weights / weights.sum()]


def _activate(logits: Tensor, nonlinearity: Nonlinearity) -> Tensor:
    if nonlinearity == "softmax":
        return torch.softmax(logits, dim=1)
    if nonlinearity == "sigmoid":
        return torch.sigmoid(logits)
    return logits


def _bool_targets(target: Tensor, shape: torch.Size) -> Tensor:
    """Boolean one-hot ``(b, C, ...)`` of a label map ``(b, 1, ...)``/``(b, ...)``, or a bool view
    of a target that already has one channel per output (regions)."""
    if target.ndim == len(shape) - 1:
        target = target.unsqueeze(1)
    if target.shape == shape:
        return target if target.dtype == torch.bool else target != 0
    onehot = torch.zeros(shape, dtype=torch.bool, device=target.device)
    return onehot.scatter_(1, target.long(), True)


class SoftDiceLoss(nn.Module):
    """Soft Dice on probabilities, ``-mean(dc)`` with ``dc = (2I + s) / max(G + P + s, 1e-8)``.

    Memory-efficient: the one-hot target is boolean and built without gradient, and only the
    per-class sums ``I`` (intersection), ``G`` (target) and ``P`` (prediction) are kept.

    Args:
        nonlinearity: applied to the logits first ("softmax", "sigmoid" or None for probabilities).
        do_bg: keep channel 0; False drops background in label mode (it would dominate the mean).
        batch_dice: sum I, G, P over the batch before the ratio (one Dice per class for the whole
            batch, more stable for small or rare structures) instead of one per sample and class.
        smooth: added to numerator and denominator; makes an empty class with an empty
            prediction score 1 instead of 0/0.
    """

    def __init__(
        self,
        *,
        nonlinearity: Nonlinearity = "softmax",
        do_bg: bool = True,
        batch_dice: bool = False,
        smooth: float = 1e-5,
    ) -> None:
        super().__init__()
        self.nonlinearity = nonlinearity
        self.do_bg = do_bg
        self.batch_dice = batch_dice
        self.smooth = smooth
        # Under DDP the batch statistics must cover every rank's part of the batch; the trainer
        # sets this to a differentiable all-reduce (see training/distributed.py).
        self.batch_reduce: Callable[[Tensor], Tensor] | None = None

    def forward(self, logits: Tensor, target: Tensor, loss_mask: Tensor | None = None) -> Tensor:
        """``target``: label map ``(b, 1, ...)`` or per-channel targets shaped like ``logits``;
        ``loss_mask``: ``(b, 1, ...)``, nonzero where the voxel counts."""
        probs = _activate(logits, self.nonlinearity)
        axes = tuple(range(2, probs.ndim))
        with torch.no_grad():
            truth = _bool_targets(target, probs.shape)
            if not self.do_bg:
                truth = truth[:, 1:]
            if loss_mask is not None:
                truth = truth & (loss_mask != 0)
            sum_gt = truth.sum(axes).to(probs.dtype)
        if not self.do_bg:
            probs = probs[:, 1:]
        if loss_mask is not None:
            probs = probs * loss_mask.to(probs.dtype)
        intersect = (probs * truth).sum(axes)
        sum_pred = probs.sum(axes)
        if self.batch_dice:
            intersect, sum_pred, sum_gt = intersect.sum(0), sum_pred.sum(0), sum_gt.sum(0)
            if self.batch_reduce is not None:
                intersect, sum_pred, sum_gt = map(self.batch_reduce, (intersect, sum_pred, sum_gt))
        denominator = torch.clamp(sum_gt + sum_pred + self.smooth, min=1e-8)
        dc = (2 * intersect + self.smooth) / denominator
        return -dc.mean()


class SegmentationLoss(nn.Module):
    """CE + Dice (label mode) or BCE + Dice (region mode), both weighted 1, with ignore handling.

    Label mode: ``logits (b, C, ...)``, ``target (b, 1, ...)`` integer (int16 or long), values in
    ``[0, C)`` or the ignore label. Region mode: ``target (b, R, ...)`` bool/uint8/float, plus one
    last channel that is true at ignored voxels when the dataset has an ignore label.
    """

    def __init__(self, *, regions: bool, batch_dice: bool, ignore_label: int | None) -> None:
        super().__init__()
        self.regions = regions
        self.ignore_label = ignore_label
        self.dice = SoftDiceLoss(
            nonlinearity="sigmoid" if regions else "softmax",
            do_bg=regions,
            batch_dice=batch_dice,
            smooth=1e-5,
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.regions:
            return self._region_loss(logits, target)
        return self._label_loss(logits, target)

    def _label_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        target = target.long()
        if target.ndim == logits.ndim - 1:
            target = target.unsqueeze(1)
        if self.ignore_label is None:
            return F.cross_entropy(logits, target[:, 0]) + self.dice(logits, target)
        annotated = target != self.ignore_label
        dice = self.dice(logits, torch.where(annotated, target, 0), loss_mask=annotated)
        # Mean CE over annotated voxels; a batch without any contributes 0 (torch's own "mean"
        # would give 0/0 = NaN). Dividing by a clamped count avoids a host sync on GPU.
        ce_sum = F.cross_entropy(
            logits, target[:, 0], ignore_index=self.ignore_label, reduction="sum"
        )
        ce = ce_sum / annotated.sum().clamp_min(1).to(ce_sum.dtype)
        return ce + dice

    def _region_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        expected = logits.shape[1] + (self.ignore_label is not None)
        if target.shape[1] != expected:
            raise ValueError(
                f"region target has {target.shape[1]} channels, expected {expected} "
                f"({logits.shape[1]} regions{' + ignore' if expected > logits.shape[1] else ''})"
            )
        if self.ignore_label is None:
            truth = target.to(logits.dtype)
            bce = F.binary_cross_entropy_with_logits(logits, truth)
            return bce + self.dice(logits, target)
        annotated = target[:, -1:] == 0
        target = target[:, :-1]
        weight = annotated.to(logits.dtype).expand_as(logits)
        per_voxel = F.binary_cross_entropy_with_logits(
            logits, target.to(logits.dtype), reduction="none"
        )
        # Mean over annotated voxel-region pairs, so an ignore channel without ignored voxels
        # gives exactly the same value as no ignore channel.
        bce = (per_voxel * weight).sum() / torch.clamp(weight.sum(), min=1e-8)
        return bce + self.dice(logits, target, loss_mask=annotated)


class DeepSupervisionLoss(nn.Module):
    """``sum_i w_i * loss(outputs[i], targets[i])``; outputs with weight 0 are not evaluated."""

    def __init__(self, loss: nn.Module, weights: Sequence[float]) -> None:
        super().__init__()
        self.loss = loss
        self.weights = tuple(float(w) for w in weights)

    def forward(self, outputs: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
        if not len(outputs) == len(targets) == len(self.weights):
            raise ValueError(
                f"deep supervision got {len(outputs)} outputs, {len(targets)} targets and "
                f"{len(self.weights)} weights; all three must match"
            )
        total: Tensor | None = None
        for weight, output, target in zip(self.weights, outputs, targets, strict=True):
            if weight == 0:
                continue
            term = weight * self.loss(output, target)
            total = term if total is None else total + term
        if total is None:
            raise ValueError("all deep supervision weights are 0; nothing to optimise")
        return total


def build_loss(
    *,
    regions: bool,
    batch_dice: bool,
    ignore_label: int | None,
    deep_supervision_weights: Sequence[float] | None,
) -> nn.Module:
    """The training loss; wrapped for deep supervision when weights are given."""
    loss = SegmentationLoss(regions=regions, batch_dice=batch_dice, ignore_label=ignore_label)
    if deep_supervision_weights is None:
        return loss
    return DeepSupervisionLoss(loss, deep_supervision_weights)


def _nearest_exact_indices(size_in: int, size_out: int) -> slice | np.ndarray:
    """Source index of each output index, as torch's ``nearest-exact`` with an output size:
    ``min(floor((i + 0.5) * size_in / size_out), size_in - 1)``; a slice when evenly spaced."""
    ratio = size_in / size_out
    indices = np.minimum(np.floor((np.arange(size_out) + 0.5) * ratio), size_in - 1).astype(np.intp)
    steps = np.diff(indices)
    if size_out == 1 or (steps[0] > 0 and np.all(steps == steps[0])):
        step = int(steps[0]) if size_out > 1 else 1
        return slice(int(indices[0]), int(indices[-1]) + 1, step)
    return indices


def downsample_targets(seg: np.ndarray, scales: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """The segmentation at every deep-supervision scale (nearest-exact, dtype kept).

    ``seg`` is ``(b, c, *spatial)``; each scale has one factor per spatial axis and the output size
    is ``round(size * factor)``. Scale 1 returns ``seg`` itself (no copy). The network's outputs
    have exactly these sizes because patch sizes are divisible by the cumulative strides, where the
    source index is simply ``floor((i + 0.5) / factor)``.
    """
    spatial = seg.shape[2:]
    results = []
    for scale in scales:
        if len(scale) != len(spatial):
            raise ValueError(f"scale {tuple(scale)} does not match spatial shape {spatial}")
        if all(s == 1 for s in scale):
            results.append(seg)
            continue
        out = seg
        for axis, (size, factor) in enumerate(zip(spatial, scale, strict=True), start=2):
            index = _nearest_exact_indices(size, max(1, round(size * factor)))
            selector = (slice(None),) * axis + (index,)
            out = out[selector]
        results.append(np.ascontiguousarray(out))
    return results
