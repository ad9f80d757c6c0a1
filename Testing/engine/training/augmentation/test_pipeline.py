"""The whole training / validation chains: order, output format, alignment of image and labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from batchgenerators.transforms.spatial_transforms import MirrorTransform

from autoseg.training.augmentation import (
    augmentation_geometry,
    build_train_transforms,
    build_val_transforms,
)
from autoseg.training.augmentation.cascade import RandomBinaryMorphology, RemoveRandomComponent
from autoseg.training.augmentation.spatial import SpatialTransform

PATCH = (16, 20, 12)
SCALES = [(1.0, 1.0, 1.0), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)]


def _batch(patch=PATCH, b=3, channels=2, seg_channels=1, seed=0):
    initial = augmentation_geometry(patch).initial_patch_size
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(b, channels, *initial)).astype(np.float32)
    seg = rng.integers(-1, 3, size=(b, seg_channels, *initial)).astype(np.int16)
    return {"data": data, "seg": seg, "keys": [f"case_{i}" for i in range(b)]}


def _crop(shape, patch=PATCH):
    """Leading (b, c) slices + the centre crop of ``patch`` from ``shape`` (spatial)."""
    centre = [slice((n - p) // 2, (n - p) // 2 + p) for n, p in zip(shape, patch, strict=True)]
    return (slice(None), slice(None), *centre)


def _only(transforms, keep: tuple[type, ...] = ()):
    """Switch off every random step except those of the given types (in place)."""
    for step in transforms.transforms:
        if isinstance(step, keep):
            continue
        for name in ("p", "p_per_sample", "p_rotation", "p_scaling"):
            if hasattr(step, name):
                setattr(step, name, 0.0)
    return transforms


def _train(patch=PATCH, **kwargs):
    options = {"deep_supervision_scales": SCALES, "regions": None, "ignore_label": None}
    options.update(kwargs)
    return build_train_transforms(augmentation_geometry(patch), patch, **options)


def test_label_mode_output_has_the_agreed_format():
    out = _train()(**_batch())
    assert set(out) == {"data", "target", "keys"}
    assert out["keys"] == ["case_0", "case_1", "case_2"]
    assert isinstance(out["data"], torch.Tensor)
    assert out["data"].dtype == torch.float32
    assert tuple(out["data"].shape) == (3, 2, *PATCH)
    assert [tuple(t.shape) for t in out["target"]] == [
        (3, 1, 16, 20, 12),
        (3, 1, 8, 10, 6),
        (3, 1, 4, 5, 3),
    ]
    assert all(t.dtype == torch.int16 for t in out["target"])
    assert int(out["target"][0].min()) >= 0  # -1 removed


def test_region_mode_gives_uint8_region_channels_with_ignore_last():
    batch = _batch()
    batch["seg"][batch["seg"] == 2] = 4  # ignore label
    transforms = _train(regions=((1, 2), (2,)), ignore_label=4)
    out = transforms(**batch)
    assert [tuple(t.shape) for t in out["target"]] == [
        (3, 3, 16, 20, 12),
        (3, 3, 8, 10, 6),
        (3, 3, 4, 5, 3),
    ]
    assert all(t.dtype == torch.uint8 for t in out["target"])
    assert int(out["target"][0][:, 2].sum()) > 0  # the ignore channel is filled


def test_without_deep_supervision_the_target_is_one_tensor():
    out = _train(deep_supervision_scales=None)(**_batch())
    assert isinstance(out["target"], torch.Tensor)
    assert tuple(out["target"].shape) == (3, 1, *PATCH)


def test_mirroring_keeps_image_and_labels_aligned():
    rng = np.random.default_rng(5)
    initial = augmentation_geometry(PATCH).initial_patch_size
    data = rng.normal(size=(40, 1, *initial)).astype(np.float32)
    seg = (data > 0.3).astype(np.int16)
    transforms = _only(_train(deep_supervision_scales=None), keep=(MirrorTransform,))
    out = transforms(data=data.copy(), seg=seg, keys=list(range(40)))
    image, target = out["data"].numpy(), out["target"].numpy()
    np.testing.assert_array_equal(target, (image > 0.3).astype(np.int16))
    unflipped = np.all(image == data[_crop(initial)], axis=(1, 2, 3, 4))
    assert 0 < unflipped.sum() < 40  # some samples were mirrored, some not (p 1/8 each)


def test_mask_channels_zero_the_image_where_the_seg_is_negative():
    batch = _batch(channels=2)
    transforms = _only(_train(mask_channels=(1,), deep_supervision_scales=None))
    crop = _crop(batch["seg"].shape[2:])
    outside = batch["seg"][crop][:, 0] < 0
    expected = batch["data"][crop].copy()
    out = transforms(**batch)
    image = out["data"].numpy()
    assert outside.any()
    assert np.all(image[:, 1][outside] == 0)
    np.testing.assert_array_equal(image[:, 1][~outside], expected[:, 1][~outside])
    np.testing.assert_array_equal(image[:, 0], expected[:, 0])  # not a masked channel
    assert np.all(out["target"].numpy()[:, 0][outside] == 0)  # -1 then 0 after RemoveLabel


def test_out_of_bounds_becomes_zero_after_the_chain():
    batch = _batch(b=1)
    batch["seg"][:] = 1
    transforms = _only(_train(deep_supervision_scales=None), keep=(SpatialTransform,))
    spatial = transforms.transforms[0]
    spatial.p_rotation, spatial.p_scaling, spatial.scaling_range = 0.0, 1.0, (1.4, 1.4)
    target = transforms(**batch)["target"].numpy()
    assert target[0, 0, 0, 0, 0] == 0  # sampled outside the crop: -1 -> 0
    assert target[0, 0, 8, 10, 6] == 1


def test_dummy_2d_pipeline_runs_and_keeps_shapes():
    patch = (4, 40, 32)
    assert augmentation_geometry(patch).dummy_2d
    out = _train(patch, deep_supervision_scales=[(1, 1, 1), (1, 0.5, 0.5)])(**_batch(patch))
    assert tuple(out["data"].shape) == (3, 2, 4, 40, 32)
    assert tuple(out["target"][1].shape) == (3, 1, 4, 20, 16)


def test_2d_pipeline_runs():
    patch = (24, 20)
    out = _train(patch, deep_supervision_scales=[(1, 1), (0.5, 0.5)])(**_batch(patch))
    assert tuple(out["data"].shape) == (3, 2, 24, 20)
    assert tuple(out["target"][1].shape) == (3, 1, 12, 10)


def test_cascade_appends_one_hot_channels_and_corrupts_them():
    transforms = _train(cascade_labels=(1, 2))
    kinds = [type(t) for t in transforms.transforms]
    assert RandomBinaryMorphology in kinds
    assert RemoveRandomComponent in kinds
    out = transforms(**_batch(seg_channels=2))
    assert tuple(out["data"].shape) == (3, 4, *PATCH)
    assert set(np.unique(out["data"][:, 2:].numpy())) <= {0.0, 1.0}
    assert tuple(out["target"][0].shape) == (3, 1, *PATCH)


def test_validation_runs_steps_13_to_16_only():
    batch = _batch(patch=PATCH, seg_channels=2)
    crop = _crop(batch["seg"].shape[2:])
    batch["data"] = np.ascontiguousarray(batch["data"][crop])
    batch["seg"] = np.ascontiguousarray(batch["seg"][crop])
    image = batch["data"].copy()
    previous = batch["seg"][:, 1].copy()
    transforms = build_val_transforms(
        deep_supervision_scales=SCALES, regions=None, ignore_label=None, cascade_labels=(1, 2)
    )
    out = transforms(**batch)
    np.testing.assert_array_equal(out["data"][:, :2].numpy(), image)
    np.testing.assert_array_equal(out["data"][:, 2].numpy(), previous == 1)
    assert int(out["target"][0].min()) == 0
    assert [tuple(t.shape)[2:] for t in out["target"]] == [(16, 20, 12), (8, 10, 6), (4, 5, 3)]


def test_a_patch_that_does_not_fit_the_geometry_is_rejected():
    with pytest.raises(ValueError, match="does not fit"):
        build_train_transforms(
            augmentation_geometry((8, 8, 8)),
            (16, 16, 16),
            deep_supervision_scales=None,
            regions=None,
            ignore_label=None,
        )
