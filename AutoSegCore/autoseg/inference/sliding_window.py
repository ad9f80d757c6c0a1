"""Sliding-window prediction: whole-volume logits from a network trained on patches.

The network only ever saw patches, so a volume is covered by overlapping patch-sized tiles
(neighbours overlap by ``1 - step`` of a patch). Predictions near a tile's border see little context
and are less reliable, so every tile's logits are weighted by a Gaussian centred on the tile and the
weighted sum is divided by the summed weights. Optional test-time mirroring averages the logits of
every flipped copy of a tile (flipped back), which the training's mirroring augmentation makes
meaningful. Images smaller than a patch are zero-padded (content centred) and the result cropped.

A 2D configuration predicts a 3D preprocessed array slice by slice along axis 0; it is handled as a
3D window whose tiles are one slice thick, so slices and in-plane tiles batch together.

Accumulation is float32 on the compute device (nnU-Net uses fp16 there; fp32 doubles the buffer but
is exact enough to make tiling invisible). When a GPU runs out of memory the buffers move to the CPU
and the case is predicted again. Only the network runs under fp16 autocast, and only on CUDA.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache, reduce

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from autoseg.errors import AutoSegError
from autoseg.progress import ProgressCallback, no_progress

Network = Callable[[torch.Tensor], torch.Tensor]
PROGRESS_STAGE = "sliding window"
_CPU = torch.device("cpu")


def _check_step(step: float) -> None:
    if not 0 < step <= 1:
        raise AutoSegError(
            f"Sliding window: step {step} is outside (0, 1]. "
            "Fix: pass a tile step size like 0.5 (smaller = more overlap, slower)."
        )


def tile_starts(size: int, patch: int, step: float) -> list[int]:
    """Start positions of the tiles along one axis: evenly spread, first at 0, last at size - patch.

    The count is the fewest tiles whose stride is at most ``patch * step``.
    """
    _check_step(step)
    if patch < 1 or size < patch:
        raise AutoSegError(
            f"Sliding window: axis of size {size} cannot hold a patch of {patch}. "
            "Fix: pad the image to at least the patch size first."
        )
    count = math.ceil((size - patch) / (patch * step)) + 1
    if count == 1:
        return [0]
    stride = (size - patch) / (count - 1)
    return [round(i * stride) for i in range(count)]


def tile_slices(
    shape: Sequence[int], patch_size: Sequence[int], step: float
) -> list[tuple[slice, ...]]:
    """Every tile of a spatial ``shape`` as a tuple of slices (last axis varies fastest)."""
    if len(shape) != len(patch_size):
        raise AutoSegError(
            f"Sliding window: shape {tuple(shape)} and patch {tuple(patch_size)} differ in "
            "dimension. Fix: use a patch with one size per spatial axis."
        )
    starts = [tile_starts(int(s), int(p), step) for s, p in zip(shape, patch_size, strict=True)]
    return [
        tuple(slice(b, b + int(p)) for b, p in zip(combo, patch_size, strict=True))
        for combo in itertools.product(*starts)
    ]


def gaussian_importance_map(
    patch_size: Sequence[int], sigma_scale: float = 1 / 8, max_value: float = 10.0
) -> torch.Tensor:
    """Tile weights: a Gaussian (sigma = edge * sigma_scale) peaking at ``max_value`` in the centre.

    No weight is zero (zeros become the smallest positive weight) so every voxel gets a prediction.
    The result is cached per patch size and shared: treat it as read-only.
    """
    return _gaussian(tuple(int(p) for p in patch_size), float(sigma_scale), float(max_value))


@lru_cache(maxsize=8)
def _gaussian(patch: tuple[int, ...], sigma_scale: float, max_value: float) -> torch.Tensor:
    # A blurred delta is separable: the outer product of 1D blurred deltas equals the nD blur
    # (constant mode, same truncation), at a fraction of the cost for 3D patches.
    profiles = []
    for edge in patch:
        delta = np.zeros(edge, dtype=np.float64)
        delta[edge // 2] = 1.0
        profiles.append(ndimage.gaussian_filter1d(delta, edge * sigma_scale, mode="constant"))
    weights = reduce(np.multiply.outer, profiles)
    weights = (weights / weights.max() * max_value).astype(np.float32)
    zero = weights == 0
    if zero.any():
        weights[zero] = weights[~zero].min()
    return torch.from_numpy(weights)


@dataclass(frozen=True)
class SlidingWindowSpec:
    """How to tile and combine: patch size, overlap, test-time mirroring and weighting.

    Attributes:
        patch_size: the network's patch (2 or 3 sizes; 2 on a 3D image predicts slice by slice).
        step: tile stride as a fraction of the patch (0.5 = half-patch overlap).
        mirror_axes: spatial axes of the network input to mirror for TTA (None or () = off).
        gaussian: weight tiles by :func:`gaussian_importance_map` instead of uniformly.
        tile_batch_size: tiles (or slices) per network call.
    """

    patch_size: tuple[int, ...]
    step: float = 0.5
    mirror_axes: tuple[int, ...] | None = None
    gaussian: bool = True
    tile_batch_size: int = 1

    def __post_init__(self) -> None:
        patch = tuple(int(p) for p in self.patch_size)
        object.__setattr__(self, "patch_size", patch)
        if len(patch) not in (2, 3) or min(patch) < 1:
            raise AutoSegError(
                f"Sliding window: patch size {patch} is invalid. Fix: give 2 or 3 positive sizes."
            )
        _check_step(self.step)
        if self.tile_batch_size < 1:
            raise AutoSegError(
                f"Sliding window: tile_batch_size {self.tile_batch_size} < 1. Fix: use 1 or more."
            )
        if self.mirror_axes is not None:
            axes = tuple(int(a) for a in self.mirror_axes)
            object.__setattr__(self, "mirror_axes", axes)
            if len(set(axes)) != len(axes) or any(not 0 <= a < len(patch) for a in axes):
                raise AutoSegError(
                    f"Sliding window: mirror axes {axes} are not distinct spatial axes of a "
                    f"{len(patch)}D patch. Fix: use axes from 0 to {len(patch) - 1}."
                )


@dataclass(frozen=True)
class _Window:
    """The spec resolved for one image: tile shape over the image axes and the mirror passes."""

    patch: tuple[int, ...]
    flips: tuple[tuple[int, ...], ...]  # dims of the network input to flip, one entry per pass
    slices: bool  # 2D network on a 3D image: tiles are (1, y, z) and lose axis 0 for the network

    @classmethod
    def build(cls, spec: SlidingWindowSpec, spatial_dims: int) -> _Window:
        patch = spec.patch_size
        slices = len(patch) == 2 and spatial_dims == 3
        if not slices and len(patch) != spatial_dims:
            raise AutoSegError(
                f"Sliding window: a {len(patch)}D patch {patch} cannot tile an image with "
                f"{spatial_dims} spatial axes. Fix: pass the image as (c, x, y, z) "
                "(or (c, y, z) for a 2D image)."
            )
        axes = spec.mirror_axes or ()
        flips = tuple(
            tuple(a + 2 for a in subset)
            for r in range(len(axes) + 1)
            for subset in itertools.combinations(axes, r)
        )
        return cls((1, *patch) if slices else patch, flips, slices)

    def tiles(self, shape: Sequence[int], step: float) -> list[tuple[slice, ...]]:
        """The tiles of a padded image; in slice mode every slice exactly once (no overlap)."""
        if not self.slices:
            return tile_slices(shape, self.patch, step)
        plane = tile_slices(shape[1:], self.patch[1:], step)
        return [(slice(i, i + 1), *tile) for i in range(shape[0]) for tile in plane]


@dataclass(frozen=True)
class _Run:
    """Everything one prediction needs besides the image and where the buffers live."""

    network: Network
    window: _Window
    num_classes: int
    device: torch.device
    step: float
    batch_size: int
    weights: torch.Tensor  # per-tile weights, shape window.patch
    progress: ProgressCallback


def _call(network: Network, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    out = network(x)
    if not isinstance(out, torch.Tensor):
        raise AutoSegError(
            f"The network returned {type(out).__name__}, not one tensor. Fix: switch deep "
            "supervision off (network.deep_supervision = False) before predicting."
        )
    expected = (x.shape[0], num_classes, *x.shape[2:])
    if tuple(out.shape) != expected:
        raise AutoSegError(
            f"The network returned logits of shape {tuple(out.shape)} for input "
            f"{tuple(x.shape)}; expected {expected}. Fix: check that num_classes matches the "
            "model's output channels and the patch suits the network's strides."
        )
    return out.float()


def _forward(run: _Run, batch: torch.Tensor) -> torch.Tensor:
    """Mirror-averaged float32 logits ``(b, K, *patch)`` of tiles ``(b, c, *patch)``."""
    x = batch[:, :, 0] if run.window.slices else batch
    autocast = (
        torch.autocast("cuda", dtype=torch.float16)
        if run.device.type == "cuda"
        else contextlib.nullcontext()
    )
    total: torch.Tensor | None = None
    with autocast:
        for dims in run.window.flips:
            if dims:
                out = torch.flip(_call(run.network, torch.flip(x, dims), run.num_classes), dims)
            else:
                out = _call(run.network, x, run.num_classes)
            # Not in place: a network may hand back its input or a tensor it keeps.
            total = out if total is None else total + out
    assert total is not None  # flips always holds the unmirrored pass
    if len(run.window.flips) > 1:
        total = total / len(run.window.flips)
    return total.unsqueeze(2) if run.window.slices else total


def _accumulate(run: _Run, image: torch.Tensor, buffers: torch.device) -> torch.Tensor:
    """Weighted average of all tiles' logits over the (padded) image, on ``buffers``."""
    shape = tuple(image.shape[1:])
    logits = torch.zeros((run.num_classes, *shape), dtype=torch.float32, device=buffers)
    weight_sum = torch.zeros(shape, dtype=torch.float32, device=buffers)
    source = image.to(buffers)  # tiles are cut where the buffers live
    weights_buffers = run.weights.to(buffers)
    tiles = run.window.tiles(shape, run.step)
    for first in range(0, len(tiles), run.batch_size):
        group = tiles[first : first + run.batch_size]
        # Normal buffers may be updated in place inside inference mode; only the network's
        # temporaries become inference tensors, so the result stays an ordinary tensor.
        with torch.inference_mode():
            batch = torch.stack([source[(slice(None), *tile)] for tile in group])
            predicted = _forward(run, batch.to(run.device, non_blocking=True)).to(buffers)
            for tile, values in zip(group, predicted, strict=True):
                # Weighting fused into the accumulation: no weighted copy of every tile (3-4x
                # faster than multiply-then-add on a CT-sized buffer, bench/predict.py).
                logits[(slice(None), *tile)].addcmul_(values, weights_buffers)
                weight_sum[tile] += weights_buffers
        run.progress(PROGRESS_STAGE, first + len(group), len(tiles))
    return logits.div_(weight_sum)


def _with_buffer_fallback(
    compute: Callable[[torch.device], torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Run with buffers on ``device``; on CUDA out-of-memory, once more with buffers on the CPU."""
    try:
        return compute(device)
    except torch.cuda.OutOfMemoryError:
        if device.type != "cuda":
            raise
    # Outside the except block the failed attempt's buffers are unreferenced and can be freed.
    torch.cuda.empty_cache()
    try:
        return compute(_CPU)
    except torch.cuda.OutOfMemoryError as exc:
        raise AutoSegError(
            "Sliding window: the GPU ran out of memory even with the result buffers on the CPU. "
            "Fix: free GPU memory, use a smaller tile batch size, or predict on the CPU."
        ) from exc


@contextlib.contextmanager
def _eval_mode(network: Network) -> Iterator[None]:
    """Evaluate modules in eval mode (dropout off, running norm stats) and restore them afterwards."""
    if not isinstance(network, torch.nn.Module):
        yield
        return
    modes = [(module, module.training) for module in network.modules()]
    network.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _pad_to(image: torch.Tensor, patch: Sequence[int]) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad spatial axes to at least ``patch`` (content centred, extra on the high side)."""
    spatial = image.shape[1:]
    low = [max(p - s, 0) // 2 for s, p in zip(spatial, patch, strict=True)]
    high = [max(p - s, 0) - lo for s, p, lo in zip(spatial, patch, low, strict=True)]
    crop = tuple(slice(lo, lo + s) for lo, s in zip(low, spatial, strict=True))
    if not any(low) and not any(high):
        return image, crop
    pad: list[int] = []
    for lo, hi in zip(reversed(low), reversed(high), strict=True):
        pad += [lo, hi]  # F.pad lists the last axis first
    return F.pad(image, pad, mode="constant", value=0.0), crop


def _tile_weights(spec: SlidingWindowSpec, window: _Window) -> torch.Tensor:
    weights = (
        gaussian_importance_map(spec.patch_size)
        if spec.gaussian
        else torch.ones(spec.patch_size, dtype=torch.float32)
    )
    return weights.reshape(window.patch)


def predict_logits(
    network: Network,
    image: torch.Tensor,
    spec: SlidingWindowSpec,
    *,
    num_classes: int,
    device: torch.device,
    progress: ProgressCallback | None = None,
) -> torch.Tensor:
    """Logits ``(num_classes, *spatial)`` float32 on the CPU for a preprocessed image ``(c, ...)``.

    Args:
        network: maps ``(b, c, *patch)`` to logits ``(b, num_classes, *patch)`` (no deep
            supervision); modules are evaluated in eval mode and restored afterwards.
        image: ``(c, x, y, z)`` (or ``(c, y, z)`` with a 2D patch) float32, any device.
        spec: tiling, mirroring and weighting.
        num_classes: output channels of the network.
        device: where the network runs (and the buffers, unless that runs out of memory).
        progress: called as ``(stage, tiles_done, tiles_total)`` after every network batch.
    """
    image = torch.as_tensor(image, dtype=torch.float32)
    window = _Window.build(spec, image.ndim - 1)
    run = _Run(
        network,
        window,
        int(num_classes),
        torch.device(device),
        spec.step,
        spec.tile_batch_size,
        _tile_weights(spec, window),
        progress or no_progress,
    )
    padded, crop = _pad_to(image, window.patch)
    with torch.no_grad(), _eval_mode(network):
        logits = _with_buffer_fallback(
            lambda buffers: _accumulate(run, padded, buffers), run.device
        )
    result = logits[(slice(None), *crop)].to(_CPU).contiguous()
    # One inf or NaN makes the sum non-finite. A sum, unlike isfinite(result).all(), needs no bool
    # array of the volume's size and is a single pass (measured on a CT-sized case, issue 15). Only
    # logits beyond ~1e30, which no working model gives, could overflow it on their own.
    if not bool(torch.isfinite(result.sum())):
        raise AutoSegError(
            "Sliding window: the prediction contains inf or NaN (fp16 overflow or a broken model). "
            "Fix: check the input normalization and the checkpoint, or predict on the CPU."
        )
    return result
