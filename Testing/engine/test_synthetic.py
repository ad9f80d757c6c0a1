"""make_synthetic_dataset: deterministic, valid, both labels everywhere, anisotropic; the demo's
dataset has a lesion large enough to be learned in the demo's short training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.errors import AutoSegError
from autoseg.synthetic import (
    DEMO_SPEC,
    LABELS,
    SyntheticSpec,
    channel_names,
    make_synthetic_dataset,
)

SMALL = SyntheticSpec(shape=(12, 32, 32))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _errors(folder: Path) -> list[str]:
    from autoseg.integrity import verify_dataset

    return [str(p) for p in verify_dataset(folder, num_processes=1) if p.is_error]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = make_synthetic_dataset(tmp_path / "a", num_cases=3, spec=SMALL)
    second = make_synthetic_dataset(tmp_path / "b", num_cases=3, spec=SMALL)
    assert _files(first) == _files(second)
    other = make_synthetic_dataset(
        tmp_path / "c", num_cases=3, spec=SyntheticSpec(SMALL.shape, seed=1)
    )
    name = "imagesTr/case_000_0000.nii.gz"
    assert _files(other)[name] != _files(first)[name]


def test_first_cases_do_not_depend_on_num_cases(tmp_path: Path) -> None:
    few = _files(make_synthetic_dataset(tmp_path / "a", num_cases=2, spec=SMALL))
    many = _files(make_synthetic_dataset(tmp_path / "b", num_cases=4, spec=SMALL))
    assert few["labelsTr/case_001.nii.gz"] == many["labelsTr/case_001.nii.gz"]


def test_default_dataset_is_valid_and_complete(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=6)
    assert folder == tmp_path / "Dataset900_DemoCT"
    assert _errors(folder) == []
    data = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    assert data["labels"] == LABELS == {"background": 0, "organ": 1, "lesion": 2}
    assert data["channel_names"] == {"0": "CT"}
    assert data["numTraining"] == 6
    assert data["file_ending"] == ".nii.gz"
    shapes = set()
    for case in range(6):
        label = sitk.ReadImage(str(folder / "labelsTr" / f"case_{case:03d}.nii.gz"))
        image = sitk.ReadImage(str(folder / "imagesTr" / f"case_{case:03d}_0000.nii.gz"))
        assert set(np.unique(sitk.GetArrayViewFromImage(label))) == {0, 1, 2}
        assert image.GetSpacing() == pytest.approx((0.8, 0.8, 3.0))
        assert image.GetOrigin() == label.GetOrigin() != (0.0, 0.0, 0.0)
        shapes.add(image.GetSize())
        assert image.GetSize()[2] == 24
        assert all(57 <= n <= 71 for n in image.GetSize()[:2])
    assert len(shapes) > 1  # per-case in-plane jitter


def test_ct_intensities(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=1)
    image = sitk.GetArrayFromImage(
        sitk.ReadImage(str(folder / "imagesTr" / "case_000_0000.nii.gz"))
    )
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / "case_000.nii.gz")))
    assert image.dtype == np.int16
    assert (image[:, 0, :] == 0).all()  # zero-padded border
    assert (image[:, 3:-3, 3:-3] == -1024).any()  # corners outside the scanner's field of view
    assert abs(np.median(image[label == 1]) - 80) < 10
    assert abs(np.median(image[label == 2]) - 150) < 15
    assert 10 < np.std(image[label == 1]) < 30


def test_channels_and_test_cases(tmp_path: Path) -> None:
    spec = SyntheticSpec(shape=(12, 32, 32), num_channels=3, with_test_cases=2)
    folder = make_synthetic_dataset(tmp_path, 901, "MultiMR", num_cases=2, spec=spec)
    assert _errors(folder) == []
    data = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    assert data["channel_names"] == {"0": "CT", "1": "T2", "2": "T1"}
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [
        f"case_00{c}_000{k}.nii.gz" for c in (2, 3) for k in range(3)
    ]
    assert sorted(p.name for p in (folder / "labelsTs").iterdir()) == [
        "case_002.nii.gz",
        "case_003.nii.gz",
    ]
    assert channel_names(7)["6"] == "MR6"


def test_other_file_ending(tmp_path: Path) -> None:
    spec = SyntheticSpec(shape=(12, 32, 32), file_ending=".nrrd")
    folder = make_synthetic_dataset(tmp_path, num_cases=2, spec=spec)
    assert (folder / "labelsTr" / "case_001.nrrd").is_file()
    assert _errors(folder) == []


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    folder = make_synthetic_dataset(tmp_path, num_cases=1, spec=SMALL)
    with pytest.raises(AutoSegError, match="already exists"):
        make_synthetic_dataset(tmp_path, num_cases=2, spec=SMALL)
    assert len(list((folder / "labelsTr").iterdir())) == 1
    make_synthetic_dataset(tmp_path, num_cases=2, spec=SMALL, overwrite=True)
    assert len(list((folder / "labelsTr").iterdir())) == 2
    with pytest.raises(AutoSegError, match="already uses dataset id 900"):
        make_synthetic_dataset(tmp_path, name="Other", num_cases=1, spec=SMALL, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Dataset900_DemoCT"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (2, 32, 32)},
        {"spacing": (1.0, 0.0, 1.0)},
        {"file_ending": ".png"},
        {"lesion_size": (0.0, 0.5)},
        {"lesion_size": (0.8, 0.6)},
        {"lesion_size": (0.5,)},
    ],
)
def test_bad_spec(kwargs: dict) -> None:
    with pytest.raises(AutoSegError, match="SyntheticSpec"):
        SyntheticSpec(**kwargs)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(AutoSegError, match="num_cases"):
        make_synthetic_dataset(tmp_path, num_cases=0)
    with pytest.raises(AutoSegError, match="invalid"):
        make_synthetic_dataset(tmp_path, name="bad name")


def _lesion_stats(label_file: Path) -> tuple[int, int, int, float]:
    """(lesion voxels, organ voxels, slices the lesion spans, lesion share of the image)."""
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(label_file)))
    lesion = label == 2
    slices = int(np.count_nonzero(lesion.any(axis=(1, 2))))
    return int(lesion.sum()), int((label == 1).sum()), slices, float(lesion.mean())


def test_demo_lesion_is_large_enough_to_learn(tmp_path: Path) -> None:
    """The demo trains a few hundred iterations: a lesion of one or two slices and a few dozen
    voxels (the default spec's smallest) is never found in that time, so the demo's lesion must
    span several slices and a visible share of the image in every case, held-out ones included."""
    folder = make_synthetic_dataset(tmp_path, num_cases=20, spec=DEMO_SPEC)
    assert _errors(folder) == []
    files = sorted((folder / "labelsTr").iterdir()) + sorted((folder / "labelsTs").iterdir())
    assert len(files) == 20 + DEMO_SPEC.with_test_cases >= 24
    stats = [_lesion_stats(f) for f in files]
    for file, (lesion, organ, slices, share) in zip(files, stats, strict=True):
        assert lesion >= 40, file.name
        assert slices >= 3, file.name
        assert share >= 0.001, file.name
        assert organ > lesion, file.name  # still the small class next to a larger one
    assert np.median([s[0] for s in stats]) >= 80


def test_demo_lesion_is_larger_than_the_default(tmp_path: Path) -> None:
    """Same cases drawn with the default and the demo lesion size: only the lesion grows."""
    shape_only = SyntheticSpec(shape=DEMO_SPEC.shape, spacing=DEMO_SPEC.spacing)
    default = make_synthetic_dataset(tmp_path / "a", num_cases=6, spec=shape_only)
    demo = make_synthetic_dataset(tmp_path / "b", num_cases=6, spec=DEMO_SPEC)
    for case in range(6):
        name = f"labelsTr/case_{case:03d}.nii.gz"
        small, large = _lesion_stats(default / name), _lesion_stats(demo / name)
        assert large[0] > small[0]
        assert large[0] + large[1] == pytest.approx(small[0] + small[1], rel=0.2)
