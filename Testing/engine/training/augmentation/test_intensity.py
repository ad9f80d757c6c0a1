"""Intensity augmentations (steps 4-10 of §5.6): probabilities and parameter ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest
from batchgenerators.transforms.color_transforms import (
    ContrastAugmentationTransform,
    GammaTransform,
)

from autoseg.training.augmentation import intensity
from autoseg.training.augmentation.intensity import (
    GaussianBlur,
    GaussianNoise,
    MultiplicativeBrightness,
    SimulateLowResolution,
    bg_contrast,
)
from autoseg.training.augmentation.pipeline import _intensity

N = 3000


def _random(n=N, channels=1, shape=(6, 6), seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 2.0, size=(n, channels, *shape)).astype(np.float32)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per sample: did any value change?"""
    return ~np.all(np.isclose(before, after, rtol=0, atol=1e-7), axis=tuple(range(1, before.ndim)))


@pytest.mark.parametrize(
    ("transform", "p"),
    [
        (GaussianNoise(), 0.1),
        (GaussianBlur(p_per_channel=1.0), 0.2),
        (MultiplicativeBrightness(), 0.15),
        (ContrastAugmentationTransform((0.75, 1.25), True, True, p_per_sample=0.15), 0.15),
        (GammaTransform((0.7, 1.5), True, True, retain_stats=True, p_per_sample=0.1), 0.1),
        (GammaTransform((0.7, 1.5), False, True, retain_stats=True, p_per_sample=0.3), 0.3),
    ],
    ids=["noise", "blur", "brightness", "contrast", "inverted-gamma", "gamma"],
)
def test_each_transform_fires_at_its_probability(transform, p, binomial):
    data = _random()
    out = transform(data=data.copy())["data"]
    binomial(int(_changed(data, out).sum()), N, p)


def test_the_pipeline_uses_the_method_probabilities():
    steps = _intensity(dummy_2d=False)
    probabilities = [getattr(t, "p", None) or t.p_per_sample for t in steps]
    assert probabilities == [0.1, 0.2, 0.15, 0.15, 0.25, 0.1, 0.3]
    assert [getattr(t, "invert_image", None) for t in steps[-2:]] == [True, False]


def test_blur_picks_channels_with_probability_one_half(binomial):
    data = _random(channels=2)
    out = GaussianBlur()(data=data.copy())["data"]
    per_channel = ~np.all(np.isclose(data, out, rtol=0, atol=1e-7), axis=(2, 3))
    binomial(int(per_channel.any(axis=1).sum()), N, 0.2 * (1 - 0.25))
    binomial(int(per_channel.sum()), 2 * N, 0.2 * 0.5)


def test_bg_contrast_splits_at_one_with_even_odds(binomial):
    draws = np.array([bg_contrast(0.75, 1.25) for _ in range(N)])
    below = draws < 1
    binomial(int(below.sum()), N, 0.5)
    assert draws.min() >= 0.75
    assert draws.max() <= 1.25
    # each half is uniform on its side: means 0.875 and 1.125 (uniform sd = 0.25 / sqrt(12))
    for part, mean in ((draws[below], 0.875), (draws[~below], 1.125)):
        assert abs(part.mean() - mean) < 4 * 0.25 / math.sqrt(12) / math.sqrt(part.size)


def test_brightness_factors_follow_the_bgcontrast_rule(binomial):
    data = np.ones((N, 2, 2, 2), dtype=np.float32)
    out = MultiplicativeBrightness(p=1.0)(data=data.copy())["data"]
    factors = out[:, :, 0, 0]
    assert np.all(out == factors[:, :, None, None])  # one factor per channel
    assert np.mean(factors[:, 0] != factors[:, 1]) > 0.99  # drawn per channel
    assert factors.min() >= 0.75
    assert factors.max() <= 1.25
    binomial(int((factors < 1).sum()), 2 * N, 0.5)


def test_noise_sigma_is_drawn_up_to_0_1():
    data = np.zeros((400, 2, 32, 32), dtype=np.float32)
    out = GaussianNoise(p=1.0)(data=data)["data"]
    sigmas = out.std(axis=(2, 3))
    assert sigmas.max() < 0.1 * 1.15  # sampling error of a 1024-voxel std is ~2%
    np.testing.assert_allclose(sigmas[:, 0], sigmas[:, 1], rtol=0.15, atol=0.004)  # shared σ
    assert abs(sigmas.mean() - 0.05) < 0.005


def test_blur_draws_sigma_per_axis_with_truncate_6_and_reflect(monkeypatch):
    calls = []

    def spy(volume, sigma, mode, truncate):
        calls.append((tuple(sigma), mode, truncate))
        return volume

    monkeypatch.setattr(intensity.ndimage, "gaussian_filter", spy)
    GaussianBlur(p=1.0, p_per_channel=1.0)(data=np.zeros((200, 1, 4, 4, 4), dtype=np.float32))
    sigmas = np.array([c[0] for c in calls])
    assert sigmas.shape == (200, 3)
    assert sigmas.min() >= 0.5
    assert sigmas.max() <= 1.0
    assert np.mean(sigmas[:, 0] != sigmas[:, 1]) > 0.99  # independent per axis
    assert {(c[1], c[2]) for c in calls} == {("mirror", 6.0)}


def test_contrast_preserves_the_channel_range():
    data = _random(n=200)
    out = ContrastAugmentationTransform((0.75, 1.25), True, True, p_per_sample=1.0)(
        data=data.copy()
    )["data"]
    assert np.all(out.min(axis=(1, 2, 3)) >= data.min(axis=(1, 2, 3)) - 1e-6)
    assert np.all(out.max(axis=(1, 2, 3)) <= data.max(axis=(1, 2, 3)) + 1e-6)


@pytest.mark.parametrize("invert", [True, False])
def test_gamma_keeps_mean_and_std(invert):
    data = _random(n=50, shape=(8, 8))
    gamma = GammaTransform((0.7, 1.5), invert, True, retain_stats=True, p_per_sample=1.0)
    out = gamma(data=data.copy())["data"]
    assert _changed(data, out).all()
    np.testing.assert_allclose(out.mean(axis=(2, 3)), data.mean(axis=(2, 3)), rtol=1e-4)
    np.testing.assert_allclose(out.std(axis=(2, 3)), data.std(axis=(2, 3)), rtol=1e-3)


def test_low_resolution_fires_per_sample_and_per_channel(monkeypatch, binomial):
    small_shapes = []

    def spy(channel, small):
        small_shapes.append(small)
        return channel

    monkeypatch.setattr(intensity, "_nearest_then_linear", spy)
    SimulateLowResolution()(data=np.zeros((N, 2, 20, 30, 40), dtype=np.float32))
    binomial(len(small_shapes), 2 * N, 0.25 * 0.5)
    zooms = np.array(small_shapes) / [20, 30, 40]
    assert zooms.min() >= 0.5 - 0.5 / 20
    assert zooms.max() <= 1.0
    np.testing.assert_allclose(zooms[:, 0], zooms[:, 2], atol=0.05)  # one s for all axes


def test_low_resolution_keeps_axis_0_in_dummy_2d(monkeypatch):
    small_shapes = []
    monkeypatch.setattr(intensity, "_nearest_then_linear", lambda c, s: small_shapes.append(s) or c)
    lowres = SimulateLowResolution(p=1.0, p_per_channel=1.0, ignore_axes=(0,))
    lowres(data=np.zeros((50, 1, 5, 30, 40), dtype=np.float32))
    assert {s[0] for s in small_shapes} == {5}
    assert min(s[1] for s in small_shapes) < 20


def test_low_resolution_is_nearest_down_and_linear_up():
    ramp = np.arange(4, dtype=np.float32)[None, :].repeat(2, axis=0)  # (2, 4) image
    out = intensity._nearest_then_linear(ramp, (2, 2))
    # nearest-exact keeps columns floor((i + 0.5) * 2) = 1 and 3; linear (align_corners=False)
    # back to 4 samples at -0.25, 0.25, 0.75, 1.25 (clamped at the edges)
    np.testing.assert_allclose(out[0], [1.0, 1.5, 2.5, 3.0])
    volume = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    assert intensity._nearest_then_linear(volume, (2, 2, 2)).shape == (2, 2, 2)
