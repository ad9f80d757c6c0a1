from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from autoseg.training.losses import (
    DeepSupervisionLoss,
    SegmentationLoss,
    SoftDiceLoss,
    build_loss,
    deep_supervision_scales,
    deep_supervision_weights,
    downsample_targets,
)

S = 1e-5  # the Dice smoothing term
LN2 = math.log(2.0)


def labels(*values: int, dtype: torch.dtype = torch.long) -> torch.Tensor:
    """A (1, 1, n) label map."""
    return torch.tensor([[list(values)]], dtype=dtype)


def probs_two_classes(foreground: list[float]) -> torch.Tensor:
    """(1, 2, n) probabilities: background = 1 - foreground."""
    fg = torch.tensor(foreground, dtype=torch.float64)
    return torch.stack([1 - fg, fg])[None]


# ----------------------------------------------------------------------------- deep supervision


def test_scales_are_inverse_cumulative_strides_without_the_deepest_stage():
    strides = [[1, 1, 1], [2, 2, 2], [2, 2, 1], [2, 2, 2]]
    assert deep_supervision_scales(strides) == [
        (1.0, 1.0, 1.0),
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.5),
    ]


def test_weights_for_six_stages_halve_and_zero_the_coarsest():
    weights = deep_supervision_weights(5)  # 6 stages -> 5 decoder outputs
    assert weights == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15, 0.0])
    assert weights[0] == pytest.approx(0.5333333)
    assert sum(weights) == pytest.approx(1.0)


def test_weights_for_one_and_two_outputs():
    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(2) == [1.0, 0.0]
    with pytest.raises(ValueError, match="n_outputs"):
        deep_supervision_weights(0)


# ----------------------------------------------------------------------------- soft Dice


def test_perfect_probabilities_give_exactly_minus_one():
    dice = SoftDiceLoss(nonlinearity=None, do_bg=False)
    probs = probs_two_classes([1, 1, 0, 0])
    assert float(dice(probs, labels(1, 1, 0, 0))) == -1.0


def test_soft_dice_matches_a_hand_computation():
    # class 1: I = 0.8 + 0.6 = 1.4, P = 1.6, G = 2
    dice = SoftDiceLoss(nonlinearity=None, do_bg=False)
    value = float(dice(probs_two_classes([0.8, 0.6, 0.2, 0.0]), labels(1, 1, 0, 0)))
    assert value == pytest.approx(-(2.8 + S) / (3.6 + S))
    # with background: class 0 has I = 0.8 + 1.0 = 1.8, P = 2.4, G = 2
    with_bg = SoftDiceLoss(nonlinearity=None, do_bg=True)
    value = float(with_bg(probs_two_classes([0.8, 0.6, 0.2, 0.0]), labels(1, 1, 0, 0)))
    expected = ((2.8 + S) / (3.6 + S) + (3.6 + S) / (4.4 + S)) / 2
    assert value == pytest.approx(-expected)


def test_batch_dice_pools_samples_before_the_ratio():
    probs = torch.cat([probs_two_classes([1, 1, 0, 0]), probs_two_classes([0.5, 0, 0, 0])])
    target = torch.cat([labels(1, 1, 0, 0), labels(0, 0, 0, 0)])
    per_sample = SoftDiceLoss(nonlinearity=None, do_bg=False, batch_dice=False)
    pooled = SoftDiceLoss(nonlinearity=None, do_bg=False, batch_dice=True)
    # per sample: dc = 1 and S / (0.5 + S); pooled: I = 2, P = 2.5, G = 2
    assert float(per_sample(probs, target)) == pytest.approx(-(1 + S / (0.5 + S)) / 2)
    assert float(pooled(probs, target)) == pytest.approx(-(4 + S) / (4.5 + S))


def test_loss_mask_removes_voxels_from_every_sum():
    dice = SoftDiceLoss(nonlinearity=None, do_bg=False)
    probs = probs_two_classes([0.8, 0.6, 0.9, 0.9])
    mask = torch.tensor([[[1, 1, 0, 0]]], dtype=torch.bool)
    masked = float(dice(probs, labels(1, 0, 1, 1), loss_mask=mask))
    # only the first two voxels count: I = 0.8, P = 1.4, G = 1
    assert masked == pytest.approx(-(1.6 + S) / (2.4 + S))


# ----------------------------------------------------------------------------- label mode


def test_label_mode_uniform_logits_give_ln2_minus_dice():
    loss = SegmentationLoss(regions=False, batch_dice=False, ignore_label=None)
    logits = torch.zeros(1, 2, 4, requires_grad=True)
    value = loss(logits, labels(1, 1, 0, 0))
    # CE of a uniform 2-class softmax is ln 2; Dice of class 1: I = 1, P = 2, G = 2
    assert float(value.detach()) == pytest.approx(LN2 - (2 + S) / (4 + S), rel=1e-6)
    value.backward()
    assert torch.isfinite(logits.grad).all()


def test_label_mode_accepts_int16_and_unbatched_channel_targets():
    loss = SegmentationLoss(regions=False, batch_dice=True, ignore_label=None)
    logits = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 3, (2, 1, 5, 4), generator=torch.Generator().manual_seed(1))
    reference = float(loss(logits, target))
    assert float(loss(logits, target.to(torch.int16))) == pytest.approx(reference)
    assert float(loss(logits, target[:, 0])) == pytest.approx(reference)


def test_ignored_voxels_do_not_change_the_label_loss():
    loss = SegmentationLoss(regions=False, batch_dice=False, ignore_label=3)
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 6, generator=gen)
    target = torch.randint(0, 3, (2, 1, 6), generator=gen)
    reference = float(loss(logits, target))
    extra_logits = torch.cat([logits, 10 * torch.randn(2, 3, 4, generator=gen)], dim=2)
    extra_target = torch.cat([target, torch.full((2, 1, 4), 3)], dim=2)
    assert float(loss(extra_logits, extra_target)) == pytest.approx(reference, rel=1e-6)


def test_batch_without_annotation_skips_ce_and_stays_finite():
    loss = SegmentationLoss(regions=False, batch_dice=False, ignore_label=2)
    logits = torch.randn(1, 2, 4, requires_grad=True)
    value = loss(logits, labels(2, 2, 2, 2))
    # CE contributes 0; every Dice sum is 0 so dc = S / S = 1
    assert float(value.detach()) == pytest.approx(-1.0)
    value.backward()
    assert torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------- region mode


def region_target(*channels: list[int], dtype: torch.dtype = torch.bool) -> torch.Tensor:
    return torch.tensor([list(channels)], dtype=dtype)


def test_region_mode_uniform_logits_give_ln2_minus_dice_over_all_regions():
    loss = SegmentationLoss(regions=True, batch_dice=False, ignore_label=None)
    logits = torch.zeros(1, 2, 4)
    target = region_target([1, 1, 0, 0], [1, 0, 0, 0])
    # sigmoid 0.5 everywhere: region 0 I=1, P=2, G=2; region 1 I=0.5, P=2, G=1
    dice = ((2 + S) / (4 + S) + (1 + S) / (3 + S)) / 2
    assert float(loss(logits, target)) == pytest.approx(LN2 - dice, rel=1e-6)
    for dtype in (torch.uint8, torch.float32):
        same = float(loss(logits, target.to(dtype)))
        assert same == pytest.approx(LN2 - dice, rel=1e-6)


def test_region_ignore_channel_masks_voxels_and_is_neutral_when_empty():
    plain = SegmentationLoss(regions=True, batch_dice=True, ignore_label=None)
    with_ignore = SegmentationLoss(regions=True, batch_dice=True, ignore_label=3)
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 2, 5, generator=gen)
    target = torch.rand(2, 2, 5, generator=gen) > 0.5
    reference = float(plain(logits, target))
    nothing_ignored = torch.cat([target, torch.zeros(2, 1, 5, dtype=torch.bool)], dim=1)
    assert float(with_ignore(logits, nothing_ignored)) == pytest.approx(reference, rel=1e-6)
    extra_logits = torch.cat([logits, 10 * torch.randn(2, 2, 3, generator=gen)], dim=2)
    extra_target = torch.cat([target, torch.rand(2, 2, 3, generator=gen) > 0.5], dim=2)
    ignore = torch.cat([torch.zeros(2, 1, 5), torch.ones(2, 1, 3)], dim=2).bool()
    masked = with_ignore(extra_logits, torch.cat([extra_target, ignore], dim=1))
    assert float(masked) == pytest.approx(reference, rel=1e-6)


def test_region_target_with_wrong_channel_count_is_rejected():
    loss = SegmentationLoss(regions=True, batch_dice=False, ignore_label=3)
    with pytest.raises(ValueError, match="expected 3"):
        loss(torch.zeros(1, 2, 4), region_target([1, 1, 0, 0], [1, 0, 0, 0]))


# ----------------------------------------------------------------------------- wrapping


class RecordingLoss(nn.Module):
    """Returns the mean of the output and records which outputs it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.seen.append(int(target))
        return output.mean()


def test_deep_supervision_sums_weighted_losses_and_skips_zero_weights():
    inner = RecordingLoss()
    wrapped = DeepSupervisionLoss(inner, [0.75, 0.25, 0.0])
    outputs = [torch.tensor(2.0), torch.tensor(4.0), torch.tensor(float("nan"))]
    value = wrapped(outputs, [torch.tensor(0), torch.tensor(1), torch.tensor(2)])
    assert float(value) == pytest.approx(0.75 * 2 + 0.25 * 4)
    assert inner.seen == [0, 1]
    with pytest.raises(ValueError, match="must match"):
        wrapped(outputs[:2], [torch.tensor(0), torch.tensor(1)])


def test_build_loss_wraps_only_with_weights():
    plain = build_loss(
        regions=False, batch_dice=True, ignore_label=None, deep_supervision_weights=None
    )
    assert isinstance(plain, SegmentationLoss)
    wrapped = build_loss(
        regions=True, batch_dice=False, ignore_label=4, deep_supervision_weights=[1.0, 0.0]
    )
    assert isinstance(wrapped, DeepSupervisionLoss)
    assert wrapped.weights == (1.0, 0.0)
    assert wrapped.loss.regions
    assert wrapped.loss.ignore_label == 4


# ----------------------------------------------------------------------------- target downsampling


def torch_nearest_exact(seg: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    tensor = torch.from_numpy(seg.astype(np.float32))
    out = torch.nn.functional.interpolate(tensor, size=size, mode="nearest-exact")
    return out.numpy().astype(seg.dtype)


@pytest.mark.parametrize(
    ("shape", "scale"),
    [
        ((8, 12, 6), (0.5, 0.5, 0.5)),
        ((8, 12, 6), (0.25, 0.25, 0.5)),
        ((7, 5, 9), (0.5, 0.5, 0.25)),
        ((11, 3, 10), (1 / 3, 1.0, 0.125)),
        ((9, 10), (0.5, 0.25)),
    ],
)
def test_downsampling_matches_torch_nearest_exact(shape, scale):
    rng = np.random.default_rng(0)
    seg = rng.integers(-1, 4, size=(2, 1, *shape)).astype(np.int16)
    (result,) = downsample_targets(seg, [scale])
    size = tuple(max(1, round(s * f)) for s, f in zip(shape, scale, strict=True))
    np.testing.assert_array_equal(result, torch_nearest_exact(seg, size))
    assert result.dtype == np.int16
    assert result.flags.c_contiguous


def test_downsampling_by_two_takes_every_second_voxel_from_index_one():
    seg = np.arange(16, dtype=np.uint8).reshape(1, 1, 4, 4)
    full, half = downsample_targets(seg, [(1.0, 1.0), (0.5, 0.5)])
    assert full is seg
    np.testing.assert_array_equal(half[0, 0], [[5, 7], [13, 15]])


def test_downsampling_keeps_bool_region_channels():
    seg = np.zeros((1, 3, 4, 4, 4), dtype=bool)
    seg[0, 1, 1, 1, 1] = True
    (half,) = downsample_targets(seg, [(0.5, 0.5, 0.5)])
    assert half.dtype == np.bool_
    assert half.shape == (1, 3, 2, 2, 2)
    assert half[0, 1, 0, 0, 0]
    assert half.sum() == 1
