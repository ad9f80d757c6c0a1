from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autoseg.training.online_metrics import PseudoDice, dice_counts, ema_update


def logits_for(prediction: list[list[int]], n_classes: int) -> torch.Tensor:
    """(b, C, n) logits whose argmax is ``prediction``."""
    hard = torch.tensor(prediction)
    return torch.nn.functional.one_hot(hard, n_classes).permute(0, 2, 1).float() * 5


def as_lists(counts: tuple[torch.Tensor, ...]) -> list[list[int]]:
    return [c.tolist() for c in counts]


def test_label_counts_by_hand_exclude_background():
    logits = logits_for([[0, 1, 1, 2, 2, 0]], 3)
    target = torch.tensor([[[0, 1, 2, 2, 2, 1]]], dtype=torch.int16)
    counts = dice_counts(logits, target, regions=False, ignore_label=None)
    # class 1: pred {1, 2}, ref {1, 5}; class 2: pred {3, 4}, ref {2, 3, 4}
    assert as_lists(counts) == [[1, 2], [1, 0], [1, 1]]
    assert all(c.dtype == torch.int64 for c in counts)


def test_label_counts_sum_over_the_batch_and_mask_ignored_voxels():
    logits = logits_for([[1, 1, 0, 1], [1, 0, 0, 1]], 2)
    target = torch.tensor([[[1, 0, 0, 2]], [[1, 1, 2, 2]]])
    counts = dice_counts(logits, target, regions=False, ignore_label=2)
    # ignoring label 2: sample 0 TP 1 FP 1; sample 1 TP 1 FN 1
    assert as_lists(counts) == [[2], [1], [1]]
    unmasked = dice_counts(
        logits, torch.where(target == 2, 0, target), regions=False, ignore_label=None
    )
    assert as_lists(unmasked) == [[2], [3], [1]]


def test_region_counts_by_hand_with_the_ignore_channel():
    logits = torch.tensor([[[3.0, 3.0, -1.0, 2.0], [-2.0, 1.0, 1.0, -3.0]]])
    target = torch.tensor([[[1, 0, 1, 1], [0, 1, 0, 1], [0, 0, 0, 1]]], dtype=torch.uint8)
    counts = dice_counts(logits, target, regions=True, ignore_label=3)
    # last voxel ignored; region 0: pred {0, 1}, ref {0, 2}; region 1: pred {1, 2}, ref {1}
    assert as_lists(counts) == [[1, 1], [1, 1], [1, 0]]
    no_ignore = dice_counts(logits, target[:, :2].bool(), regions=True, ignore_label=None)
    assert as_lists(no_ignore) == [[2, 1], [1, 1], [1, 1]]


def naive_label_counts(logits: torch.Tensor, target: torch.Tensor) -> list[list[int]]:
    prediction = logits.argmax(1)
    rows: list[list[int]] = [[], [], []]
    for c in range(1, logits.shape[1]):
        p, t = prediction == c, target[:, 0] == c
        rows[0].append(int((p & t).sum()))
        rows[1].append(int((p & ~t).sum()))
        rows[2].append(int((~p & t).sum()))
    return rows


def test_label_counts_match_per_class_masks_on_random_volumes():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 6, 5, 4, generator=gen)
    target = torch.randint(0, 4, (3, 1, 6, 5, 4), generator=gen)
    counts = dice_counts(logits, target, regions=False, ignore_label=None)
    assert as_lists(counts) == naive_label_counts(logits, target)


def test_pseudo_dice_accumulates_and_reports_nan_for_unseen_classes():
    dice = PseudoDice()
    assert dice.dice_per_class() == []
    assert math.isnan(dice.mean())
    dice.add(torch.tensor([1, 0, 0]), torch.tensor([1, 0, 0]), torch.tensor([0, 2, 0]))
    dice.add(np.array([1, 0, 0]), np.array([0, 0, 0]), np.array([1, 0, 0]))
    per_class = dice.dice_per_class()
    # class 0: TP 2, FP 1, FN 1 -> 4/6; class 1: TP 0, FN 2 -> 0; class 2 never seen
    assert per_class[:2] == pytest.approx([4 / 6, 0.0])
    assert math.isnan(per_class[2])
    assert dice.mean() == pytest.approx(2 / 6)


def test_pseudo_dice_mean_is_nan_when_no_class_was_seen():
    dice = PseudoDice()
    dice.add(torch.zeros(2, dtype=torch.int64), torch.zeros(2), torch.zeros(2))
    assert all(math.isnan(v) for v in dice.dice_per_class())
    assert math.isnan(dice.mean())


def test_ema_starts_with_the_first_value_then_moves_by_ten_percent():
    assert ema_update(None, 0.5) == 0.5
    assert ema_update(0.5, 1.0) == pytest.approx(0.55)
    assert ema_update(0.5, 1.0, momentum=0.5) == pytest.approx(0.75)


def test_ema_is_not_poisoned_by_nan():
    assert ema_update(math.nan, 0.4) == 0.4
    assert ema_update(0.4, math.nan) == 0.4
