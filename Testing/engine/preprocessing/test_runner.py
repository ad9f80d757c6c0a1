"""Whole-dataset preprocessing on a tiny synthetic raw dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoseg.errors import AutoSegError
from autoseg.plans import (
    ArchitectureSpec,
    ConfigurationPlan,
    IntensityStats,
    Plans,
    PreprocessingSpec,
)
from autoseg.preprocessing import preprocess_dataset
from autoseg.preprocessing.storage import case_ids, load_case, load_class_locations

SHAPE = (10, 14, 12)
SPACING = (2.0, 1.0, 1.0)


def _config(name: str, identifier: str, spacing: tuple[float, ...], **extra) -> ConfigurationPlan:
    dims = len(spacing)
    architecture = ArchitectureSpec(
        network="PlainConvUNet",
        features_per_stage=(4, 8),
        kernel_sizes=((3,) * dims, (3,) * dims),
        strides=((1,) * dims, (2,) * dims),
        n_blocks_per_stage=(1, 1),
        n_conv_per_stage_decoder=(1,),
    )
    spec = PreprocessingSpec(
        spacing=spacing, normalization_schemes=("ZScore",), use_mask_for_norm=(False,)
    )
    return ConfigurationPlan(
        name=name,
        data_identifier=identifier,
        patch_size=(8,) * dims,
        batch_size=2,
        median_image_size_in_voxels=(8.0,) * dims,
        batch_dice=False,
        preprocessing=spec,
        architecture=architecture,
        **extra,
    )


def make_plans() -> Plans:
    stats = IntensityStats(100.0, 100.0, 10.0, 50.0, 150.0, 70.0, 130.0)
    configurations = {
        "3d_fullres": _config("3d_fullres", "Plans_3d_fullres", (1.5, 1.0, 1.5)),
        "3d_cascade_fullres": _config(
            "3d_cascade_fullres", "Plans_3d_fullres", (1.5, 1.0, 1.5), inherits_from="3d_fullres"
        ),
        "2d": _config("2d", "Plans_2d", (0.5, 0.5)),
    }
    return Plans(
        dataset_name="Dataset999_Synthetic",
        plans_name="Plans",
        image_reader_writer="SimpleITKIO",
        transpose_forward=(0, 1, 2),
        transpose_backward=(0, 1, 2),
        original_median_spacing_after_transp=SPACING,
        original_median_shape_after_transp=SHAPE,
        foreground_intensity_properties_per_channel={"0": stats},
        configurations=configurations,
    )


@pytest.fixture
def raw(make_dataset) -> Path:
    def image(case: int, channel: int, shape, rng) -> np.ndarray:
        data = np.zeros(shape, np.float32)
        data[1:-1, 1:-1, 2:-1] = rng.normal(100.0, 10.0, (shape[0] - 2, shape[1] - 2, shape[2] - 3))
        return data

    return make_dataset(num_cases=3, shape=SHAPE, spacing=SPACING, image_fn=image)


def _snapshot(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_3d_and_2d_configurations(raw: Path, tmp_path: Path) -> None:
    output = tmp_path / "preprocessed" / "Dataset999_Synthetic"
    stages: list[tuple[str, int, int]] = []
    configs = ["3d_fullres", "3d_cascade_fullres", "2d"]
    preprocess_dataset(raw, output, make_plans(), configs, 1, progress=lambda *a: stages.append(a))
    assert sorted(p.name for p in output.iterdir()) == [
        "Plans_2d",
        "Plans_3d_fullres",
        "dataset.json",
        "gt_segmentations",
    ]
    ids = ["case_000", "case_001", "case_002"]
    assert case_ids(output / "Plans_3d_fullres") == ids
    data, seg, props = load_case(output / "Plans_3d_fullres", "case_000")
    cropped = props["shape_after_cropping_and_before_resampling"]
    assert props["bbox_used_for_cropping"] == [[1, 9], [1, 13], [2, 11]]
    assert data.shape == (1, round(cropped[0] * 2 / 1.5), cropped[1], round(cropped[2] / 1.5))
    assert seg.shape[1:] == data.shape[1:]
    assert props["geometry"]["spacing"] == list(SPACING)
    assert set(load_class_locations(output / "Plans_3d_fullres", "case_000")) == {"1", "2"}
    data2d, _, props2d = load_case(output / "Plans_2d", "case_000")
    assert props2d["target_spacing"] == [2.0, 0.5, 0.5]
    assert data2d.shape == (1, cropped[0], cropped[1] * 2, cropped[2] * 2)
    gt = sorted(p.name for p in (output / "gt_segmentations").iterdir())
    assert gt == [f"{i}.nii.gz" for i in ids]
    assert json.loads((output / "dataset.json").read_text()) == json.loads(
        (raw / "dataset.json").read_text()
    )
    cascade_stages = [s for s in stages if s[0] == "preprocessing Plans_3d_fullres"]
    assert cascade_stages[-1] == ("preprocessing Plans_3d_fullres", 3, 3)
    assert not any("cascade" in s[0] for s in stages)


def test_rerun_skips_and_clean_redoes(raw: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    plans = make_plans()
    preprocess_dataset(raw, output, plans, ["3d_fullres", "2d"], 1)
    before_3d, before_2d = _snapshot(output / "Plans_3d_fullres"), _snapshot(output / "Plans_2d")
    before_gt = _snapshot(output / "gt_segmentations")
    (output / "Plans_3d_fullres" / "case_001.json").unlink()  # an interrupted case is redone
    preprocess_dataset(raw, output, plans, ["3d_fullres", "2d"], 1)
    after = _snapshot(output / "Plans_3d_fullres")
    changed = {name for name in after if after[name] != before_3d.get(name)}
    assert changed
    assert all(name.startswith("case_001") for name in changed)
    assert _snapshot(output / "gt_segmentations") == before_gt
    (output / "Plans_3d_fullres" / "stale.txt").write_text("x")
    preprocess_dataset(raw, output, plans, ["3d_fullres"], 1, clean=True)
    assert not (output / "Plans_3d_fullres" / "stale.txt").exists()
    assert case_ids(output / "Plans_3d_fullres") == ["case_000", "case_001", "case_002"]
    assert _snapshot(output / "Plans_2d") == before_2d  # clean only touches requested folders


def test_splits_are_copied_but_never_overwritten(raw: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    splits = [{"train": ["case_000", "case_001"], "val": ["case_002"]}]
    (raw / "splits_final.json").write_text(json.dumps(splits))
    preprocess_dataset(raw, output, make_plans(), ["2d"], 1)
    assert json.loads((output / "splits_final.json").read_text()) == splits
    (output / "splits_final.json").write_text(json.dumps([{"train": [], "val": []}]))
    with pytest.raises(AutoSegError, match=r"splits_final\.json"):
        preprocess_dataset(raw, output, make_plans(), ["2d"], 1)


def test_unknown_configuration_and_bad_case_are_reported(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(AutoSegError, match="no configuration 'nope'"):
        preprocess_dataset(raw, tmp_path / "out", make_plans(), ["nope"], 1)
    (raw / "labelsTr" / "case_001.nii.gz").write_bytes(b"not an image")
    with pytest.raises(AutoSegError, match="case_001"):
        preprocess_dataset(raw, tmp_path / "out2", make_plans(), ["2d"], 1)


def test_two_processes_equal_one(raw: Path, tmp_path: Path) -> None:
    plans = make_plans()
    preprocess_dataset(raw, tmp_path / "one", plans, ["3d_fullres"], 1)
    preprocess_dataset(raw, tmp_path / "two", plans, ["3d_fullres"], [2])
    for case_id in ["case_000", "case_001", "case_002"]:
        a = load_case(tmp_path / "one" / "Plans_3d_fullres", case_id, mmap=False)
        b = load_case(tmp_path / "two" / "Plans_3d_fullres", case_id, mmap=False)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2] == b[2]
