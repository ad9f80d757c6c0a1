"""Tests of the training patch sampler on small synthetic preprocessed folders.

The synthetic images hold each voxel's coordinate + 1 in one channel per axis, so a crop tells
exactly where it was taken from (0 = padding): corners, slices and the alignment of image, seg and
previous-stage channels are read back from the batch instead of from the sampler's internals.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from autoseg.errors import AutoSegError
from autoseg.labels import LabelSpec
from autoseg.preprocessing.case import PreprocessedCase, sample_class_locations
from autoseg.preprocessing.storage import save_case
from autoseg.training import loader
from autoseg.training.loader import (
    PatchSampler,
    SamplerConfig,
    crop_bounds,
    foreground_slots,
    rank_batch_size,
    rank_slots,
)

LABELS = LabelSpec.from_json({"background": 0, "a": 1})
IGNORE_LABELS = LabelSpec.from_json({"background": 0, "a": 1, "ignore": 2})


def write_case(
    folder: Path, case_id: str, seg: np.ndarray, labels: LabelSpec = LABELS
) -> np.ndarray:
    """Save a case whose image is its voxel coordinates + 1; returns the image."""
    data = np.indices(seg.shape, dtype=np.float32) + 1
    seg4 = seg[None].astype(np.int8)
    locations = sample_class_locations(seg4, labels)
    save_case(folder, case_id, PreprocessedCase(data, seg4, {"spacing": [1.0] * 3}, locations))
    return data


def make_sampler(folder: Path, case_ids: tuple[str, ...], **overrides) -> PatchSampler:
    settings = {
        "folder": folder,
        "case_ids": case_ids,
        "patch_size": (4, 4, 4),
        "initial_patch_size": (7, 6, 5),
        "forced_slots": (False,) * 8,
    }
    settings.update(overrides)
    return PatchSampler(SamplerConfig(**settings))


def corners(data: np.ndarray) -> np.ndarray:
    """Lower corner of each crop (and, for a 2D batch, the slice index first) from the coordinates."""
    spatial = data.ndim - 2
    result = []
    for sample in data:
        position = np.argwhere(sample[0] > 0)[0]
        coords = sample[(slice(None), *position)].astype(np.int64) - 1
        coords[-spatial:] -= position
        result.append(coords)
    return np.array(result)


def padded_window(array: np.ndarray, lower, size, fill: int) -> np.ndarray:
    """Reference crop with np.pad (independent of the sampler's window arithmetic)."""
    margin = max(size) + 2
    padded = np.pad(array, margin, constant_values=fill)
    return padded[
        tuple(slice(lo + margin, lo + margin + s) for lo, s in zip(lower, size, strict=True))
    ]


def centre_window(seg: np.ndarray, initial, patch) -> np.ndarray:
    """The final patch the augmentation centre-crops from one sample's ``(C, *initial)`` seg."""
    offsets = [(i - p) // 2 for i, p in zip(initial, patch, strict=True)]
    return seg[(slice(None), *(slice(o, o + p) for o, p in zip(offsets, patch, strict=True)))]


# --- slot flags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "expected"),
    [
        (1, [False]),
        (2, [False, True]),
        (3, [False, False, True]),
        (4, [False, False, False, True]),
        (9, [False] * 6 + [True] * 3),
    ],
)
def test_foreground_slots_follow_the_rounding_rule(batch_size, expected):
    assert foreground_slots(batch_size) == expected


def test_foreground_slots_reject_bad_input():
    with pytest.raises(AutoSegError, match="batch size 0"):
        foreground_slots(0)
    with pytest.raises(AutoSegError, match=r"fraction 1\.5"):
        foreground_slots(4, 1.5)
    assert foreground_slots(4, 1.0) == [True] * 4
    assert foreground_slots(4, 0.0) == [False] * 4


def test_rank_slots_union_is_the_single_process_rule():
    for global_size in range(1, 20):
        for world in range(1, global_size + 1):
            sizes = [rank_batch_size(global_size, world, r) for r in range(world)]
            assert sum(sizes) == global_size
            assert sizes == sorted(sizes, reverse=True)
            assert max(sizes) - min(sizes) <= 1
            union = [flag for r in range(world) for flag in rank_slots(global_size, world, r)]
            assert union == foreground_slots(global_size)


def test_rank_slots_split_example_and_errors():
    assert [rank_batch_size(5, 2, r) for r in range(2)] == [3, 2]
    assert rank_slots(9, 2, 0) == [False] * 5
    assert rank_slots(9, 2, 1) == [False, True, True, True]
    with pytest.raises(AutoSegError, match="smaller than the number of processes"):
        rank_slots(2, 4, 0)
    with pytest.raises(AutoSegError, match="rank 3 of world size 2"):
        rank_batch_size(4, 2, 3)


# --- crop geometry -----------------------------------------------------------------------------


def test_crop_bounds_reading_of_the_method():
    lower, upper = crop_bounds((10, 10, 3), (7, 6, 7), (4, 4, 4))
    # pad 3 (odd): both sides get ceil(3/2) = 2; pad 2: 1 each; image smaller: pad grown to 4.
    assert lower.tolist() == [-2, -1, -2]
    assert upper.tolist() == [5, 5, -2]


def test_random_corners_cover_exactly_the_allowed_range(tmp_path):
    write_case(tmp_path, "c0", np.zeros((12, 10, 9)))
    sampler = make_sampler(tmp_path, ("c0",), forced_slots=(False, True) * 8)
    found = np.concatenate([corners(next(sampler)["data"]) for _ in range(25)])
    lower, upper = crop_bounds((12, 10, 9), (7, 6, 5), (4, 4, 4))
    for axis in range(3):
        expected = set(range(lower[axis], upper[axis] + 1))
        assert set(found[:, axis].tolist()) == expected


def test_crop_matches_a_padded_reference(tmp_path):
    seg = np.random.default_rng(0).integers(-1, 3, size=(9, 8, 6))
    data = write_case(tmp_path, "c0", seg)
    batch = next(make_sampler(tmp_path, ("c0",)))
    assert batch["data"].dtype == np.float32
    assert batch["seg"].dtype == np.int16
    assert batch["data"].shape == (8, 3, 7, 6, 5)
    assert batch["seg"].shape == (8, 1, 7, 6, 5)
    for sample, seg_sample, corner in zip(
        batch["data"], batch["seg"], corners(batch["data"]), strict=True
    ):
        expected_seg = padded_window(seg, corner, (7, 6, 5), fill=-1)
        np.testing.assert_array_equal(seg_sample[0], expected_seg)
        np.testing.assert_array_equal(sample[2], padded_window(data[2], corner, (7, 6, 5), 0))


@pytest.mark.parametrize(
    ("shape", "patch", "initial"),
    [
        ((9, 11, 7), (4, 4, 4), (7, 6, 5)),
        ((9, 11, 7), (5, 3, 6), (9, 8, 6)),
        ((3, 2, 2), (4, 4, 4), (7, 6, 5)),
        ((20, 20, 20), (2, 3, 2), (5, 3, 4)),
    ],
)
def test_forced_slots_have_foreground_in_the_final_patch(tmp_path, shape, patch, initial):
    for i, voxel in enumerate([(0, 0, 0), tuple(s - 1 for s in shape), (shape[0] // 2, 0, 1)]):
        seg = np.zeros(shape, dtype=np.int8)
        seg[voxel] = 1
        write_case(tmp_path, f"c{i}", seg)
    sampler = make_sampler(
        tmp_path,
        ("c0", "c1", "c2"),
        patch_size=patch,
        initial_patch_size=initial,
        forced_slots=(True,) * 16,
    )
    for _ in range(10):
        for sample in next(sampler)["seg"]:
            assert (centre_window(sample, initial, patch) == 1).any()


def test_case_without_foreground_falls_back_to_random_crops(tmp_path):
    write_case(tmp_path, "c0", np.zeros((30, 30, 30)))
    sampler = make_sampler(tmp_path, ("c0",), forced_slots=(True,) * 16)
    found = np.concatenate([corners(next(sampler)["data"]) for _ in range(4)])
    assert len({tuple(c) for c in found}) > 20


def test_padding_is_zero_for_the_image_and_minus_one_for_the_seg(tmp_path):
    write_case(tmp_path, "c0", np.ones((3, 4, 2)))
    batch = next(make_sampler(tmp_path, ("c0",), initial_patch_size=(6, 6, 6)))
    for data, seg in zip(batch["data"], batch["seg"], strict=True):
        # The whole image fits in every crop (the pad was grown), the rest is padding.
        assert int((data[0] > 0).sum()) == 24
        assert int((seg == 1).sum()) == 24
        assert int((seg == -1).sum()) == 6**3 - 24
        assert not data[:, seg[0] == -1].any()


# --- 2D, cascade, ignore label -------------------------------------------------------------------


def test_2d_crops_one_slice_and_forced_slots_pick_the_foreground_slice(tmp_path):
    seg = np.zeros((5, 12, 10), dtype=np.int8)
    seg[3, 6, 5] = 1
    write_case(tmp_path, "c0", seg)
    sampler = make_sampler(
        tmp_path,
        ("c0",),
        patch_size=(6, 4),
        initial_patch_size=(8, 6),
        forced_slots=(False, True) * 10,
    )
    slices: set[int] = set()
    for _ in range(5):
        batch = next(sampler)
        assert batch["data"].shape == (20, 3, 8, 6)
        assert batch["seg"].shape == (20, 1, 8, 6)
        found = corners(batch["data"])
        for sample, index in zip(batch["data"], found[:, 0], strict=True):
            assert set(np.unique(sample[0])) <= {0.0, float(index + 1)}
        assert set(found[1::2, 0].tolist()) == {3}
        assert all((centre_window(s, (8, 6), (6, 4)) == 1).any() for s in batch["seg"][1::2])
        slices.update(found[::2, 0].tolist())
    assert slices == set(range(5))


@pytest.mark.parametrize("with_channel", [True, False])
def test_cascade_stacks_the_previous_stage_cropped_identically(tmp_path, with_channel):
    seg = np.zeros((9, 8, 6), dtype=np.int8)
    seg[4, 4, 3] = 1
    write_case(tmp_path, "c0", seg)
    previous = np.random.default_rng(1).integers(0, 3, size=(9, 8, 6)).astype(np.int8)
    stage = tmp_path / "previous"
    stage.mkdir()
    np.save(stage / "c0.npy", previous[None] if with_channel else previous)
    sampler = make_sampler(
        tmp_path, ("c0",), previous_stage_folder=stage, forced_slots=(False, True) * 4
    )
    batch = next(sampler)
    assert batch["seg"].shape == (8, 2, 7, 6, 5)
    for sample, corner in zip(batch["seg"], corners(batch["data"]), strict=True):
        np.testing.assert_array_equal(sample[1], padded_window(previous, corner, (7, 6, 5), -1))
        np.testing.assert_array_equal(sample[0], padded_window(seg, corner, (7, 6, 5), -1))


def test_cascade_errors_name_the_file(tmp_path):
    write_case(tmp_path, "c0", np.zeros((9, 8, 6)))
    stage = tmp_path / "previous"
    stage.mkdir()
    with pytest.raises(AutoSegError, match=r"c0\.npy"):
        next(make_sampler(tmp_path, ("c0",), previous_stage_folder=stage))
    np.save(stage / "c0.npy", np.zeros((9, 8, 5), dtype=np.int8))
    with pytest.raises(AutoSegError, match=r"expected integer labels of shape \(1, 9, 8, 6\)"):
        next(make_sampler(tmp_path, ("c0",), previous_stage_folder=stage))


def test_ignore_label_centres_random_slots_on_annotated_voxels(tmp_path):
    seg = np.full((30, 30, 30), 2, dtype=np.int8)
    seg[14:18, 14:18, 14:18] = 0
    write_case(tmp_path, "c0", seg, IGNORE_LABELS)
    sampler = make_sampler(tmp_path, ("c0",), ignore_label=2, forced_slots=(False,) * 16)
    centre = (3, 3, 2)  # initial // 2: where the chosen voxel lands
    for _ in range(3):
        assert all(sample[(0, *centre)] == 0 for sample in next(sampler)["seg"])
    plain = make_sampler(tmp_path, ("c0",), forced_slots=(False,) * 16)
    assert any(sample[(0, *centre)] == 2 for sample in next(plain)["seg"])


def test_forced_slot_without_foreground_uses_annotated_voxels(tmp_path):
    seg = np.full((30, 30, 30), 2, dtype=np.int8)
    seg[20, 21, 22] = 0
    write_case(tmp_path, "c0", seg, IGNORE_LABELS)
    sampler = make_sampler(tmp_path, ("c0",), ignore_label=2, forced_slots=(True,) * 4)
    found = corners(next(sampler)["data"])
    assert (found == np.array([20 - 3, 21 - 3, 22 - 2])).all()


# --- randomness, caching, validation -----------------------------------------------------------


def test_seed_determinism_and_thread_streams(tmp_path):
    for i in range(3):
        seg = np.zeros((10, 9, 8), dtype=np.int8)
        seg[i + 2, 3, 4] = 1
        write_case(tmp_path, f"c{i}", seg)
    ids = ("c0", "c1", "c2")
    first, second = make_sampler(tmp_path, ids, seed=5), make_sampler(tmp_path, ids, seed=5)
    for _ in range(3):
        a, b = next(first), next(second)
        assert a["keys"] == b["keys"]
        np.testing.assert_array_equal(a["data"], b["data"])
        np.testing.assert_array_equal(a["seg"], b["seg"])
    worker = make_sampler(tmp_path, ids, seed=5)
    worker.set_thread_id(1)
    other = make_sampler(tmp_path, ids, seed=6)
    np.testing.assert_array_equal(next(worker)["data"], next(other)["data"])
    worker.set_thread_id(0)
    reference = make_sampler(tmp_path, ids, seed=5)
    np.testing.assert_array_equal(next(worker)["data"], next(reference)["data"])
    streams = [make_sampler(tmp_path, ids, seed=5) for _ in range(2)]
    streams[1].set_thread_id(1)
    assert not np.array_equal(next(streams[0])["data"], next(streams[1])["data"])


def test_cases_are_drawn_uniformly_with_replacement(tmp_path):
    for i in range(4):
        write_case(tmp_path, f"c{i}", np.zeros((6, 6, 6)))
    sampler = make_sampler(tmp_path, tuple(f"c{i}" for i in range(4)), forced_slots=(False,) * 50)
    keys = [key for _ in range(8) for key in next(sampler)["keys"]]
    counts = np.array([keys.count(f"c{i}") for i in range(4)])
    assert counts.min() > 60
    assert any(len(set(next(sampler)["keys"][:5])) < 5 for _ in range(5))


def test_opened_cases_are_cached_and_dropped_on_copy(tmp_path, monkeypatch):
    write_case(tmp_path, "c0", np.zeros((6, 6, 6)))
    sampler = make_sampler(tmp_path, ("c0",))
    next(sampler)

    def fail(*args, **kwargs):
        raise AssertionError("case re-opened")

    monkeypatch.setattr(loader, "load_case", fail)
    next(sampler)
    clone = copy.deepcopy(sampler)
    with pytest.raises(AssertionError, match="re-opened"):
        next(clone)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"patch_size": (4,), "initial_patch_size": (4,)}, "2 or 3 entries"),
        ({"initial_patch_size": (7, 6)}, "2 or 3 entries"),
        ({"initial_patch_size": (3, 6, 5)}, "must be >= patch size"),
        ({"forced_slots": ()}, "one batch slot"),
        ({"case_ids": ()}, "at least one case"),
    ],
)
def test_config_validation(tmp_path, overrides, message):
    settings = dict(overrides)
    with pytest.raises(AutoSegError, match=message):
        make_sampler(tmp_path, settings.pop("case_ids", ("c0",)), **settings)


def test_missing_segmentation_is_reported(tmp_path):
    data = np.ones((1, 6, 6, 6), dtype=np.float32)
    save_case(tmp_path, "c0", PreprocessedCase(data, None, {"spacing": [1.0] * 3}))
    with pytest.raises(AutoSegError, match="training needs the segmentation"):
        next(make_sampler(tmp_path, ("c0",)))
