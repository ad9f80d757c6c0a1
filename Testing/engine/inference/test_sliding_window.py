"""Sliding-window prediction: tile positions, Gaussian weights, TTA, 2D slices, padding, devices."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from autoseg.errors import AutoSegError
from autoseg.inference.sliding_window import (
    SlidingWindowSpec,
    _with_buffer_fallback,
    gaussian_importance_map,
    predict_logits,
    tile_slices,
    tile_starts,
)

CPU = torch.device("cpu")


def _conv(dim: int, cin: int, cout: int, kernel: int, seed: int = 0) -> nn.Module:
    """A conv with fixed random weights and bias ('same' padding)."""
    torch.manual_seed(seed)
    conv = (nn.Conv3d if dim == 3 else nn.Conv2d)(cin, cout, kernel, padding=kernel // 2)
    return conv.eval()


def _image(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


def _predict(net, image, num_classes, **spec) -> torch.Tensor:
    return predict_logits(
        net, image, SlidingWindowSpec(**spec), num_classes=num_classes, device=CPU
    )


# ------------------------------------------------------------------------------ tile positions


@pytest.mark.parametrize(
    ("size", "patch", "step", "expected"),
    [
        (40, 40, 0.5, [0]),
        (100, 40, 0.5, [0, 20, 40, 60]),
        (101, 40, 0.5, [0, 15, 30, 46, 61]),  # 61/4 = 15.25: round(30.5) = 30 (half to even)
        (41, 40, 0.5, [0, 1]),
        (64, 32, 1.0, [0, 32]),
        (65, 32, 1.0, [0, 16, 33]),
        (10, 4, 0.25, [0, 1, 2, 3, 4, 5, 6]),
    ],
)
def test_tile_starts_known_values(size, patch, step, expected) -> None:
    assert tile_starts(size, patch, step) == expected


@pytest.mark.parametrize("extra", [0, 1, 15, 16, 17, 50, 111, 283])
@pytest.mark.parametrize(("patch", "step"), [(16, 0.5), (32, 0.5), (17, 0.3), (16, 1.0)])
def test_tile_starts_follow_the_formula(extra, patch, step) -> None:
    size = patch + extra
    starts = tile_starts(size, patch, step)
    count = math.ceil((size - patch) / (patch * step)) + 1
    assert len(starts) == count
    if count > 1:
        assert starts == [round(i * (size - patch) / (count - 1)) for i in range(count)]
    assert starts[0] == 0
    assert starts[-1] == size - patch
    assert all(b - a <= patch * step + 1 for a, b in itertools.pairwise(starts))


def test_tile_starts_reject_bad_input() -> None:
    with pytest.raises(AutoSegError, match="step"):
        tile_starts(10, 4, 0.0)
    with pytest.raises(AutoSegError, match="cannot hold"):
        tile_starts(3, 4, 0.5)


def test_tiles_cover_every_voxel_and_stay_inside() -> None:
    shape, patch = (23, 40, 9), (8, 16, 9)
    tiles = tile_slices(shape, patch, 0.5)
    count = np.zeros(shape, np.int32)
    for tile in tiles:
        assert all(
            s.stop - s.start == p and s.stop <= n
            for s, p, n in zip(tile, patch, shape, strict=True)
        )
        count[tile] += 1
    assert count.min() >= 1
    per_axis = [len(tile_starts(n, p, 0.5)) for n, p in zip(shape, patch, strict=True)]
    assert len(tiles) == math.prod(per_axis)


# ------------------------------------------------------------------------------ gaussian


def test_gaussian_matches_a_blurred_delta_and_is_cached() -> None:
    patch = (9, 16, 12)
    weights = gaussian_importance_map(patch)
    assert weights.dtype == torch.float32
    assert tuple(weights.shape) == patch
    delta = np.zeros(patch)
    delta[tuple(p // 2 for p in patch)] = 1.0
    blurred = ndimage.gaussian_filter(delta, [p / 8 for p in patch], mode="constant")
    blurred = (blurred / blurred.max() * 10).astype(np.float32)
    blurred[blurred == 0] = blurred[blurred > 0].min()
    np.testing.assert_allclose(weights.numpy(), blurred, rtol=1e-5)
    assert float(weights.max()) == 10.0
    assert float(weights[4, 8, 6]) == 10.0
    assert float(weights.min()) > 0
    assert gaussian_importance_map(list(patch)) is weights


def test_gaussian_replaces_zeros_by_the_smallest_positive_weight() -> None:
    weights = gaussian_importance_map((64,), sigma_scale=1 / 64)  # narrow: the tails underflow
    positive = weights[weights > 0]
    assert float(weights.min()) == float(positive.min()) > 0
    assert int((weights == weights.min()).sum()) > 2


# ------------------------------------------------------------------------------ prediction


def test_single_tile_equals_one_full_pass() -> None:
    net = _conv(3, 2, 3, 3)
    image = _image(2, 12, 10, 14)
    expected = net(image[None])[0].detach()
    for gaussian in (True, False):
        result = _predict(net, image, 3, patch_size=(12, 10, 14), gaussian=gaussian)
        assert result.dtype == torch.float32
        assert result.device == CPU
        torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gaussian", [True, False])
def test_overlapping_tiles_of_a_pointwise_net_reproduce_the_full_pass(gaussian) -> None:
    net = _conv(3, 2, 4, 1)  # pointwise: every tile predicts the same value for a voxel
    image = _image(2, 21, 18, 25)
    expected = net(image[None])[0].detach()
    result = _predict(net, image, 4, patch_size=(8, 8, 8), step=0.5, gaussian=gaussian)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)
    batched = _predict(net, image, 4, patch_size=(8, 8, 8), gaussian=gaussian, tile_batch_size=5)
    torch.testing.assert_close(batched, result, rtol=1e-5, atol=1e-6)


def test_weighting_is_a_weighted_mean_of_tile_predictions() -> None:
    """A net that outputs a different constant per call: the result is the weighted tile mean."""
    calls = []

    def net(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(calls))
        return torch.full((x.shape[0], 1, *x.shape[2:]), float(len(calls)))

    result = _predict(net, torch.zeros(1, 8, 8, 16), 1, patch_size=(8, 8, 8), gaussian=False)
    # tiles start at z = 0, 4, 8: uniform weights average the values of the tiles covering z
    expected_z = [1] * 4 + [1.5] * 4 + [2.5] * 4 + [3] * 4
    np.testing.assert_allclose(result[0, 0, 0].numpy(), expected_z)
    assert len(calls) == 3


def test_mirroring_is_exact_for_a_flip_equivariant_net() -> None:
    net = _conv(3, 2, 3, 1)
    image = _image(2, 10, 12, 9)
    plain = _predict(net, image, 3, patch_size=(8, 8, 8))
    mirrored = _predict(net, image, 3, patch_size=(8, 8, 8), mirror_axes=(0, 1, 2))
    torch.testing.assert_close(mirrored, plain, rtol=1e-5, atol=1e-5)


def test_mirroring_averages_every_subset_of_axes() -> None:
    net = _conv(3, 1, 2, 3, seed=3)  # a random 3x3x3 kernel is not flip-equivariant
    image = _image(1, 6, 7, 8)
    axes = (0, 2)
    expected = torch.zeros(2, 6, 7, 8)
    with torch.no_grad():
        for dims in [(), (2,), (4,), (2, 4)]:
            flipped = torch.flip(image[None], dims) if dims else image[None]
            out = net(flipped)
            expected += (torch.flip(out, dims) if dims else out)[0]
    expected /= 4
    result = _predict(net, image, 2, patch_size=(6, 7, 8), mirror_axes=axes)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)
    plain = _predict(net, image, 2, patch_size=(6, 7, 8))
    assert not torch.allclose(plain, expected, atol=1e-3)


def test_2d_patch_predicts_every_slice_of_a_3d_image() -> None:
    net = _conv(2, 2, 3, 3, seed=1)
    image = _image(2, 5, 12, 10)
    expected = torch.stack([net(image[:, i][None])[0] for i in range(5)], dim=1).detach()
    shapes = []

    def counting(x: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(x.shape))
        return net(x)

    result = predict_logits(
        counting,
        image,
        SlidingWindowSpec((12, 10), tile_batch_size=3),
        num_classes=3,
        device=CPU,
    )
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)
    assert shapes == [(3, 2, 12, 10), (2, 2, 12, 10)]


def test_2d_patch_on_a_2d_image() -> None:
    net = _conv(2, 1, 2, 1, seed=5)
    image = _image(1, 13, 11)
    expected = net(image[None])[0].detach()
    result = _predict(net, image, 2, patch_size=(8, 8), mirror_axes=(0, 1))
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)


def test_2d_mirroring_on_slices_uses_in_plane_axes() -> None:
    net = _conv(2, 1, 2, 3, seed=2)
    image = _image(1, 3, 8, 9)
    expected = torch.zeros(2, 3, 8, 9)
    with torch.no_grad():
        for index in range(3):
            x = image[:, index][None]
            expected[:, index] = (net(x) + torch.flip(net(torch.flip(x, (3,))), (3,)))[0] / 2
    result = _predict(net, image, 2, patch_size=(8, 9), mirror_axes=(1,))
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)


def test_image_smaller_than_patch_is_padded_centred() -> None:
    net = _conv(3, 1, 2, 3, seed=4)
    image = _image(1, 5, 8, 3)
    patch = (8, 8, 8)
    # Centred: low pad = diff // 2, the extra voxel on the high side.
    padded = F.pad(image, (2, 3, 0, 0, 1, 2))
    expected = net(padded[None])[0, :, 1:6, :, 2:5].detach()
    result = _predict(net, image, 2, patch_size=patch)
    assert tuple(result.shape) == (2, 5, 8, 3)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-5)


def test_module_runs_in_eval_mode_and_keeps_its_mode() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(1, 2, 1), nn.Dropout(0.9), nn.BatchNorm3d(2))
    net[2].eval()
    net[0].train()
    net[1].train()
    image = _image(1, 6, 6, 6)
    first = _predict(net, image, 2, patch_size=(4, 4, 4))
    second = _predict(net, image, 2, patch_size=(4, 4, 4))
    torch.testing.assert_close(first, second)  # no dropout: deterministic
    assert [m.training for m in net.modules()] == [True, True, True, False]


def test_progress_reports_tiles() -> None:
    seen = []
    predict_logits(
        _conv(3, 1, 1, 1),
        _image(1, 8, 8, 16),
        SlidingWindowSpec((8, 8, 8), tile_batch_size=2),
        num_classes=1,
        device=CPU,
        progress=lambda stage, done, total: seen.append((done, total)),
    )
    assert seen == [(2, 3), (3, 3)]


def test_result_is_an_ordinary_tensor() -> None:
    result = _predict(_conv(3, 1, 2, 1), _image(1, 4, 4, 4), 2, patch_size=(4, 4, 4))
    result += 1  # an inference-mode tensor would refuse in-place updates here
    assert not result.requires_grad


def test_wrong_network_outputs_are_reported() -> None:
    image = _image(1, 4, 4, 4)
    with pytest.raises(AutoSegError, match="deep supervision"):
        _predict(lambda x: [x, x], image, 1, patch_size=(4, 4, 4))
    with pytest.raises(AutoSegError, match="num_classes"):
        _predict(_conv(3, 1, 2, 1), image, 3, patch_size=(4, 4, 4))
    with pytest.raises(AutoSegError, match="inf or NaN"):
        _predict(lambda x: x * float("inf"), image + 1, 1, patch_size=(4, 4, 4))
    with pytest.raises(AutoSegError, match="cannot tile"):
        _predict(_conv(3, 1, 1, 1), image[:, 0], 1, patch_size=(4, 4, 4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patch_size": (4, 4, 4), "step": 1.5}, "step"),
        ({"patch_size": (4,)}, "patch size"),
        ({"patch_size": (4, 4), "mirror_axes": (2,)}, "mirror axes"),
        ({"patch_size": (4, 4, 4), "mirror_axes": (0, 0)}, "mirror axes"),
        ({"patch_size": (4, 4, 4), "tile_batch_size": 0}, "tile_batch_size"),
    ],
)
def test_spec_validation(kwargs, message) -> None:
    with pytest.raises(AutoSegError, match=message):
        SlidingWindowSpec(**kwargs)


def test_spec_normalises_types() -> None:
    spec = SlidingWindowSpec([4, 5, 6], mirror_axes=[2, 0])
    assert spec.patch_size == (4, 5, 6)
    assert spec.mirror_axes == (2, 0)


def test_out_of_memory_retries_with_cpu_buffers() -> None:
    used = []

    def compute(buffers: torch.device) -> torch.Tensor:
        used.append(buffers.type)
        if buffers.type == "cuda":
            raise torch.cuda.OutOfMemoryError("fake")
        return torch.ones(1)

    # torch.device("cuda") is only a name here: compute never touches the GPU.
    assert _with_buffer_fallback(compute, torch.device("cuda")).item() == 1
    assert used == ["cuda", "cpu"]


def test_out_of_memory_on_the_cpu_is_not_retried() -> None:
    def compute(buffers: torch.device) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("fake")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        _with_buffer_fallback(compute, CPU)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_within_fp16_tolerance() -> None:  # pragma: no cover - GPU only
    net = _conv(3, 2, 3, 3)
    image = _image(2, 20, 18, 22)
    spec = SlidingWindowSpec((16, 16, 16), mirror_axes=(0, 1, 2), tile_batch_size=2)
    cpu = predict_logits(net, image, spec, num_classes=3, device=CPU)
    gpu = predict_logits(net.cuda(), image, spec, num_classes=3, device=torch.device("cuda"))
    assert gpu.device == CPU
    torch.testing.assert_close(gpu, cpu, rtol=1e-2, atol=1e-2)
