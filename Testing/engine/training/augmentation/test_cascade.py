"""Cascade input: one-hot of the previous stage and its random corruption (step 14)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from autoseg.training.augmentation import cascade
from autoseg.training.augmentation.cascade import (
    CascadeToOneHot,
    RandomBinaryMorphology,
    RemoveRandomComponent,
)

N = 1000


def test_previous_stage_becomes_one_hot_image_channels():
    data = np.zeros((2, 1, 4, 4), dtype=np.float32)
    seg = np.zeros((2, 2, 4, 4), dtype=np.int16)
    seg[:, 1, 0] = 1
    seg[:, 1, 1] = 3
    out = CascadeToOneHot((1, 2, 3))(data=data, seg=seg)
    assert out["data"].shape == (2, 4, 4, 4)
    assert out["seg"].shape == (2, 1, 4, 4)
    np.testing.assert_array_equal(
        out["data"][0, 1:, :, 0], [[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0]]
    )


def test_morphology_is_exact_for_a_ball():
    mask = np.zeros((9, 9, 9), dtype=bool)
    mask[4, 4, 4] = True
    assert cascade._dilate(mask, 1.5).sum() == 1 + 6 + 12  # all offsets with |d| <= 1.5
    ball = ndimage.generate_binary_structure(3, 1)
    np.testing.assert_array_equal(cascade._dilate(mask, 1.0)[3:6, 3:6, 3:6], ball)
    cube = np.zeros((9, 9, 9), dtype=bool)
    cube[2:7, 2:7, 2:7] = True
    assert cascade._erode(cube, 1.0).sum() == 27
    assert cascade._open(mask, 1.0).sum() == 0  # a single voxel does not survive opening
    np.testing.assert_array_equal(cascade.morphology(cascade._close, cube, 2.0), cube)
    opened = cascade.morphology(cascade._open, cube, 2.0)  # only a ball fits: corners go
    assert not np.any(opened & ~cube)
    assert opened[4, 4, 2]
    assert not opened[2, 2, 2]
    half = np.zeros((9, 9), dtype=bool)
    half[:, :4] = True  # touches three borders
    np.testing.assert_array_equal(cascade.morphology(cascade._erode, half, 2.0)[:, :2], True)
    assert not cascade.morphology(cascade._erode, half, 2.0)[:, 2:].any()
    assert cascade._erode(np.ones((3, 3), dtype=bool), 3.0).all()


def _two_labels(n=N):
    onehot = np.zeros((n, 3, 12, 12), dtype=np.float32)  # channel 0: image
    onehot[:, 1, 2:6, 2:6] = 1
    onehot[:, 2, 6:10, 6:10] = 1
    return onehot


def test_morphology_fires_at_its_probability(monkeypatch, binomial):
    calls = []

    def spy(operation, mask, radius):
        calls.append((len(calls), operation, radius))
        return mask

    monkeypatch.setattr(cascade, "morphology", spy)
    transform = RandomBinaryMorphology(2)
    samples_hit = 0
    for _ in range(N):
        before = len(calls)
        transform(data=_two_labels(1))
        samples_hit += len(calls) > before
    # the sample fires with p 0.4, then each of the two labels with p 0.5
    binomial(samples_hit, N, 0.4 * 0.75)
    binomial(len(calls), 2 * N, 0.4 * 0.5)
    radii = np.array([c[2] for c in calls])
    assert radii.min() >= 1.0
    assert radii.max() <= 8.0
    assert {c[1] for c in calls} == set(cascade.MORPHOLOGY)


def test_morphology_keeps_labels_exclusive_and_the_image_untouched():
    rng = np.random.default_rng(0)
    data = np.zeros((200, 3, 16, 16), dtype=np.float32)
    data[:, 0] = rng.normal(size=(200, 16, 16))
    first = rng.uniform(size=(200, 16, 16)) < 0.4
    data[:, 1] = first
    data[:, 2] = (rng.uniform(size=(200, 16, 16)) < 0.4) & ~first
    out = RandomBinaryMorphology(2, p=1.0, p_per_label=1.0)(data=data.copy())["data"]
    np.testing.assert_array_equal(out[:, 0], data[:, 0])
    assert np.all(np.any(out[:, 1:] != data[:, 1:], axis=(1, 2, 3)))
    assert out[:, 1:].sum(axis=1).max() <= 1  # one-hot stays exclusive
    assert set(np.unique(out[:, 1:])) <= {0.0, 1.0}


def test_component_removal_only_deletes_small_components(binomial):
    data = np.zeros((N, 2, 20, 20), dtype=np.float32)
    data[:, 1, 0:2, 0:2] = 1  # 4 voxels: small
    data[:, 1, 5:20, 5:20] = 1  # 225 voxels = 56% of the patch: never removed
    out = RemoveRandomComponent(1)(data=data.copy())["data"]
    removed = out[:, 1, 0:2, 0:2].sum(axis=(1, 2)) == 0
    binomial(int(removed.sum()), N, 0.2 * 0.5)
    assert np.all(out[:, 1, 5:20, 5:20] == 1)
    assert np.all(out[:, 0] == 0)
