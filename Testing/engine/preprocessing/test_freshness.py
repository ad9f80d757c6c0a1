"""Stale preprocessed cases: a re-run redoes exactly the cases whose raw files or settings changed."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from Testing.engine.preprocessing.test_runner import SHAPE, SPACING, make_plans

from autoseg.errors import AutoSegError
from autoseg.plans import IntensityStats, Plans
from autoseg.preprocessing import preprocess_dataset
from autoseg.preprocessing.case import CaseRecipe
from autoseg.preprocessing.freshness import recipe_digest
from autoseg.preprocessing.storage import case_ids, load_case, load_properties

FOLDER = "Plans_3d_fullres"
IDS = ["case_000", "case_001", "case_002"]


def _image(case: int, channel: int, shape, rng) -> np.ndarray:
    data = np.zeros(shape, np.float32)
    data[1:-1, 1:-1, 2:-1] = rng.normal(100.0, 10.0, (shape[0] - 2, shape[1] - 2, shape[2] - 3))
    return data


@pytest.fixture
def raw(make_dataset) -> Path:
    return make_dataset(num_cases=3, shape=SHAPE, spacing=SPACING, image_fn=_image)


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def _rewritten(before: dict[str, int], after: dict[str, int]) -> set[str]:
    """Case ids whose files were written (or removed) between two snapshots."""
    names = {n for n in before.keys() | after.keys() if before.get(n) != after.get(n)}
    return {n.split(".")[0].removesuffix("_seg").removesuffix("_locations") for n in names}


def _edit_image(make_dataset, path: Path, value: float) -> None:
    """Replace an image's voxels (same shape and geometry) as a user fixing a file would; its
    mtime moves one second on, so the edit shows on file systems with a coarse clock too."""
    old = path.stat().st_mtime_ns
    make_dataset.write_image(path, np.full(SHAPE, value, np.float32), SPACING)
    os.utime(path, ns=(old + 10**9, old + 10**9))


def _run(raw: Path, output: Path, plans: Plans | None = None, clean: bool = False) -> None:
    preprocess_dataset(raw, output, plans or make_plans(), ["3d_fullres"], 1, clean=clean)


def test_unchanged_dataset_redoes_nothing(raw: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "out"
    _run(raw, output)
    capsys.readouterr()
    before = _mtimes(output / FOLDER)
    _run(raw, output)
    assert _mtimes(output / FOLDER) == before
    assert capsys.readouterr().err == ""


def test_modified_image_redoes_only_that_case(
    raw: Path, tmp_path: Path, make_dataset, capsys
) -> None:
    output = tmp_path / "out"
    _run(raw, output)
    old_data = load_case(output / FOLDER, "case_001", mmap=False)[0]
    before = _mtimes(output / FOLDER)
    _edit_image(make_dataset, raw / "imagesTr" / "case_001_0000.nii.gz", 5.0)
    _run(raw, output)
    assert _rewritten(before, _mtimes(output / FOLDER)) == {"case_001"}
    assert not np.array_equal(load_case(output / FOLDER, "case_001", mmap=False)[0], old_data)
    err = capsys.readouterr().err
    assert "redoing 1 case(s) whose raw files or preprocessing settings changed: case_001" in err


def test_modified_label_redoes_the_case_and_its_ground_truth(
    raw: Path, tmp_path: Path, make_dataset
) -> None:
    output = tmp_path / "out"
    _run(raw, output)
    label = raw / "labelsTr" / "case_002.nii.gz"
    old = label.stat().st_mtime_ns
    make_dataset.write_image(label, _label(), SPACING)
    os.utime(label, ns=(old + 10**9, old + 10**9))
    before = _mtimes(output / FOLDER)
    _run(raw, output)
    assert _rewritten(before, _mtimes(output / FOLDER)) == {"case_002"}
    assert (output / "gt_segmentations" / "case_002.nii.gz").read_bytes() == label.read_bytes()


def test_added_case_is_the_only_one_preprocessed(raw: Path, tmp_path: Path, make_dataset) -> None:
    output = tmp_path / "out"
    _run(raw, output)
    before = _mtimes(output / FOLDER)
    image = _image(3, 0, SHAPE, np.random.default_rng(3))
    make_dataset.write_image(raw / "imagesTr" / "case_003_0000.nii.gz", image, SPACING)
    make_dataset.write_image(raw / "labelsTr" / "case_003.nii.gz", _label(), SPACING)
    _bump_num_training(make_dataset, raw, 4)
    _run(raw, output)
    assert _rewritten(before, _mtimes(output / FOLDER)) == {"case_003"}
    assert case_ids(output / FOLDER) == [*IDS, "case_003"]


def _label() -> np.ndarray:
    seg = np.zeros(SHAPE, np.uint8)
    seg[2:5, 2:8, 3:7] = 1
    seg[6:8, 2:8, 3:7] = 2
    return seg


def _bump_num_training(make_dataset, raw: Path, count: int) -> None:
    data = make_dataset.read_json(raw)
    make_dataset.write_json(raw, {**data, "numTraining": count})


def test_removed_case_is_deleted_with_its_ground_truth(
    raw: Path, tmp_path: Path, make_dataset, capsys
) -> None:
    output = tmp_path / "out"
    _run(raw, output)
    (output / FOLDER / "notes.txt").write_text("mine")
    (raw / "imagesTr" / "case_001_0000.nii.gz").unlink()
    (raw / "labelsTr" / "case_001.nii.gz").unlink()
    _bump_num_training(make_dataset, raw, 2)
    capsys.readouterr()
    _run(raw, output)
    assert case_ids(output / FOLDER) == ["case_000", "case_002"]
    assert not any(p.name.startswith("case_001") for p in (output / FOLDER).iterdir())
    assert not (output / "gt_segmentations" / "case_001.nii.gz").exists()
    assert (output / FOLDER / "notes.txt").read_text() == "mine"
    err = capsys.readouterr().err
    assert "removed 1 case(s) whose raw files are no longer in the dataset: case_001" in err


def test_case_stored_without_provenance_is_redone_once(raw: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "out"
    _run(raw, output)
    path = output / FOLDER / "case_000.json"
    properties = json.loads(path.read_text())
    del properties["provenance"]  # as written by the previous version
    path.write_text(json.dumps(properties))
    capsys.readouterr()
    before = _mtimes(output / FOLDER)
    _run(raw, output)
    assert _rewritten(before, _mtimes(output / FOLDER)) == {"case_000"}
    assert "redoing 1 case(s) stored without a record of their raw files: case_000" in (
        capsys.readouterr().err
    )
    assert "provenance" in load_properties(output / FOLDER, "case_000")
    again = _mtimes(output / FOLDER)
    _run(raw, output)
    assert _mtimes(output / FOLDER) == again


def test_changed_preprocessing_settings_redo_every_case(raw: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    plans = make_plans()
    _run(raw, output, plans)
    before = _mtimes(output / FOLDER)
    config = plans.configurations["3d_fullres"]
    spec = replace(config.preprocessing, spacing=(1.0, 1.0, 1.0))
    changed = replace(
        plans,
        configurations={"3d_fullres": replace(config, preprocessing=spec)},
    )
    _run(raw, output, changed)
    assert _rewritten(before, _mtimes(output / FOLDER)) == set(IDS)


def _with_stats(plans: Plans, scheme: str, mean: float) -> Plans:
    config = plans.configurations["3d_fullres"]
    spec = replace(config.preprocessing, normalization_schemes=(scheme,))
    stats = IntensityStats(mean, mean, 10.0, 50.0, 150.0, 70.0, 130.0)
    return replace(
        plans,
        configurations={"3d_fullres": replace(config, preprocessing=spec)},
        foreground_intensity_properties_per_channel={"0": stats},
    )


def test_dataset_statistics_count_only_where_normalization_uses_them() -> None:
    def digest(plans: Plans) -> str:
        return recipe_digest(CaseRecipe.from_plans(plans, "3d_fullres", None), "SimpleITKIO")

    plans = make_plans()
    assert digest(_with_stats(plans, "ZScore", 100.0)) == digest(_with_stats(plans, "ZScore", 90.0))
    assert digest(_with_stats(plans, "CT", 100.0)) != digest(_with_stats(plans, "CT", 90.0))
    assert digest(plans) != recipe_digest(
        CaseRecipe.from_plans(plans, "3d_fullres", None), "NibabelIO"
    )


def test_failed_redo_leaves_no_outdated_case(raw: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    _run(raw, output)
    image = raw / "imagesTr" / "case_002_0000.nii.gz"
    image.write_bytes(b"not an image any more")
    with pytest.raises(AutoSegError, match="case_002"):
        _run(raw, output)
    assert case_ids(output / FOLDER) == ["case_000", "case_001"]  # never trained on the old one


def test_clean_still_redoes_everything(raw: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    _run(raw, output)
    before = _mtimes(output / FOLDER)
    _run(raw, output, clean=True)
    assert _rewritten(before, _mtimes(output / FOLDER)) == set(IDS)
