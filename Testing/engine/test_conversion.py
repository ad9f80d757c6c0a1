"""convert_msd / convert_old_dataset on tiny fake task folders built in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.conversion import convert_msd, convert_old_dataset
from autoseg.errors import AutoSegError

SHAPE = (6, 7, 8)  # (z, y, x) numpy order
SPACING_4D = (0.6, 0.7, 3.5, 1.0)
ORIGIN_4D = (10.0, -20.5, 33.25, 0.0)
_ROT = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
DIRECTION_4D = np.eye(4)
DIRECTION_4D[:3, :3] = _ROT


def _write(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)
    return path


def _image_4d(seed: int, channels: int = 2) -> tuple[sitk.Image, np.ndarray]:
    volumes = np.random.default_rng(seed).normal(size=(channels, *SHAPE)).astype(np.float32)
    image = sitk.GetImageFromArray(volumes, isVector=False)
    image.SetSpacing(SPACING_4D)
    image.SetOrigin(ORIGIN_4D)
    image.SetDirection(DIRECTION_4D.ravel().tolist())
    return image, volumes


def _label_3d(value: int = 2) -> sitk.Image:
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[1:3, 2:4, 2:5] = 1
    seg[3, 3, 3] = value
    label = sitk.GetImageFromArray(seg)
    label.SetSpacing(SPACING_4D[:3])
    label.SetOrigin(ORIGIN_4D[:3])
    label.SetDirection(_ROT.ravel().tolist())
    return label


def _msd_json(**extra: Any) -> dict[str, Any]:
    return {
        "name": "PROSTATE",
        "description": "Prostate transitional zone and peripheral zone segmentation",
        "reference": "Radboud University",
        "licence": "CC-BY-SA 4.0",
        "release": "1.0 04/05/2018",
        "tensorImageSize": "4D",
        "modality": {"0": "T2", "1": "ADC"},
        "labels": {"0": "background", "1": "PZ", "2": "TZ"},
        "numTraining": 2,
        "numTest": 1,
        "training": [{"image": "./imagesTr/prostate_00.nii.gz", "label": "./labelsTr/x.nii.gz"}],
        "test": ["./imagesTs/prostate_03.nii.gz"],
        **extra,
    }


def make_msd_task(root: Path, name: str = "Task05_Prostate", channels: int = 2) -> Path:
    """Two 4D training cases, one 4D test case, and macOS ``._`` junk next to each."""
    task = root / "msd" / name
    for case in ("prostate_00", "prostate_01"):
        _write(
            _image_4d(len(case) + int(case[-1]), channels)[0], task / "imagesTr" / f"{case}.nii.gz"
        )
        _write(_label_3d(), task / "labelsTr" / f"{case}.nii.gz")
    _write(_image_4d(7, channels)[0], task / "imagesTs" / "prostate_03.nii.gz")
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        (task / folder / "._prostate_00.nii.gz").write_bytes(b"\x00\x05\x16\x07 junk")
    (task / "._dataset.json").write_bytes(b"junk")
    (task / "dataset.json").write_text(json.dumps(_msd_json()), encoding="utf-8")
    return task


def make_old_task(root: Path, name: str = "Task104_Liver") -> Path:
    """An nnU-Net v1 task: CASE_XXXX images (2 channels), labels, test images, v1 dataset.json."""
    task = root / "v1" / name
    for case in ("liver_0", "liver_1"):
        for channel in range(2):
            image = _label_3d()  # any 3D image will do
            _write(image, task / "imagesTr" / f"{case}_{channel:04d}.nii.gz")
        _write(_label_3d(), task / "labelsTr" / f"{case}.nii.gz")
    _write(_label_3d(), task / "imagesTs" / "liver_5_0000.nii.gz")
    _write(_label_3d(), task / "imagesTs" / "liver_5_0001.nii.gz")
    (task / "labelsTr" / "._liver_0.nii.gz").write_bytes(b"junk")
    data = _msd_json(numTraining=7)  # a wrong count is recomputed from the files
    (task / "dataset.json").write_text(json.dumps(data), encoding="utf-8")
    return task


def _read_json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "dataset.json").read_text(encoding="utf-8"))


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_msd_splits_4d_images_with_exact_geometry(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path)
    out = convert_msd(task, tmp_path / "raw")
    assert out == tmp_path / "raw" / "Dataset005_Prostate"
    assert _names(out) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr"]
    expected = [f"prostate_0{c}_000{k}.nii.gz" for c in (0, 1) for k in (0, 1)]
    assert _names(out / "imagesTr") == expected
    assert _names(out / "imagesTs") == ["prostate_03_0000.nii.gz", "prostate_03_0001.nii.gz"]
    _, volumes = _image_4d(len("prostate_01") + 1)
    source = sitk.ReadImage(str(task / "imagesTr" / "prostate_01.nii.gz"))  # NIfTI stores float32
    assert source.GetSpacing() == pytest.approx(SPACING_4D)
    source_direction = np.reshape(source.GetDirection(), (4, 4))[:3, :3]
    for channel in (0, 1):
        image = sitk.ReadImage(str(out / "imagesTr" / f"prostate_01_000{channel}.nii.gz"))
        assert image.GetDimension() == 3
        assert image.GetPixelID() == sitk.sitkFloat32
        assert image.GetSpacing() == source.GetSpacing()[:3]
        assert image.GetOrigin() == source.GetOrigin()[:3]
        assert image.GetDirection() == tuple(source_direction.ravel())
        assert image.GetDirection() == pytest.approx(tuple(_ROT.ravel()))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volumes[channel])


def test_msd_labels_copied_and_json_converted(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path)
    out = convert_msd(task, tmp_path / "raw")
    assert _names(out / "labelsTr") == ["prostate_00.nii.gz", "prostate_01.nii.gz"]
    source = task / "labelsTr" / "prostate_01.nii.gz"
    assert (out / "labelsTr" / "prostate_01.nii.gz").read_bytes() == source.read_bytes()
    data = _read_json(out)
    assert data["channel_names"] == {"0": "T2", "1": "ADC"}
    assert data["labels"] == {"background": 0, "PZ": 1, "TZ": 2}
    assert data["numTraining"] == 2
    assert data["file_ending"] == ".nii.gz"
    for key in ("modality", "training", "test"):
        assert key not in data
    for key in ("name", "description", "reference", "licence", "release", "tensorImageSize"):
        assert data[key] == _msd_json()[key]


def test_msd_result_passes_integrity_check(tmp_path: Path) -> None:
    from autoseg.integrity import verify_dataset

    out = convert_msd(make_msd_task(tmp_path), tmp_path / "raw")
    assert [p for p in verify_dataset(out, num_processes=1) if p.is_error] == []


def test_msd_ignores_macos_junk(tmp_path: Path) -> None:
    out = convert_msd(make_msd_task(tmp_path), tmp_path / "raw")
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_msd_3d_images_are_copied_as_channel_0(tmp_path: Path) -> None:
    task = tmp_path / "Task04_Hippocampus"
    _write(_label_3d(), task / "imagesTr" / "hippo_1.nii.gz")
    _write(_label_3d(), task / "labelsTr" / "hippo_1.nii.gz")
    data = _msd_json(modality={"0": "MRI"}, labels={"0": "background", "1": "A", "2": "B"})
    (task / "dataset.json").write_text(json.dumps(data), encoding="utf-8")
    out = convert_msd(task, tmp_path / "raw", overwrite_id=204)
    assert out.name == "Dataset204_Hippocampus"
    assert _names(out / "imagesTr") == ["hippo_1_0000.nii.gz"]
    copied = (out / "imagesTr" / "hippo_1_0000.nii.gz").read_bytes()
    assert copied == (task / "imagesTr" / "hippo_1.nii.gz").read_bytes()
    assert not (out / "imagesTs").exists()
    assert _read_json(out)["numTraining"] == 1


def test_msd_parallel_equals_sequential(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path)
    one = convert_msd(task, tmp_path / "raw", overwrite_id=105)
    two = convert_msd(task, tmp_path / "raw", overwrite_id=106, num_processes=2)
    for file in (one / "imagesTr").iterdir():
        left = sitk.GetArrayFromImage(sitk.ReadImage(str(file)))
        right = sitk.GetArrayFromImage(sitk.ReadImage(str(two / "imagesTr" / file.name)))
        np.testing.assert_array_equal(left, right)


def test_msd_refuses_existing_target(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path)
    out = convert_msd(task, tmp_path / "raw")
    before = _names(out / "imagesTr")
    with pytest.raises(AutoSegError, match="Dataset005_Prostate already exists"):
        convert_msd(task, tmp_path / "raw")
    assert _names(out / "imagesTr") == before


def test_msd_refuses_same_id(tmp_path: Path) -> None:
    (tmp_path / "raw" / "Dataset005_Other").mkdir(parents=True)
    with pytest.raises(AutoSegError, match="Dataset005_Other already uses dataset id 5"):
        convert_msd(make_msd_task(tmp_path), tmp_path / "raw")
    assert _names(tmp_path / "raw") == ["Dataset005_Other"]


def test_msd_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path, channels=3)  # dataset.json lists 2 modalities
    with pytest.raises(AutoSegError, match="3 channel"):
        convert_msd(task, tmp_path / "raw")
    assert _names(tmp_path / "raw") == []


def test_msd_non_ascii_paths(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path / "données")
    out = convert_msd(task, tmp_path / "rå data")
    assert len(_names(out / "imagesTr")) == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"labels": {"background": "zero", "a": "one"}}, "not integer label values"),
        ({"labels": {"0": "background", "1": "a", "2": "a"}}, "names must be unique"),
        ({"modality": None}, '"modality" is missing'),
        ({"modality": {"T2": "T2"}}, "not channel indices"),
    ],
)
def test_msd_bad_dataset_json(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    task = make_msd_task(tmp_path)
    data = {k: v for k, v in {**_msd_json(), **change}.items() if v is not None}
    (task / "dataset.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(AutoSegError, match=message):
        convert_msd(task, tmp_path / "raw")
    assert not (tmp_path / "raw").exists() or _names(tmp_path / "raw") == []


def test_msd_bad_layouts(tmp_path: Path) -> None:
    task = make_msd_task(tmp_path)
    with pytest.raises(AutoSegError, match="expected TaskXX_Name"):
        convert_msd(task.rename(tmp_path / "Prostate"), tmp_path / "raw")
    with pytest.raises(AutoSegError, match="is not a folder"):
        convert_msd(tmp_path / "Task09_Missing", tmp_path / "raw")
    (tmp_path / "Task09_Empty").mkdir()
    with pytest.raises(AutoSegError, match=r"dataset\.json is missing"):
        convert_msd(tmp_path / "Task09_Empty", tmp_path / "raw")
    (tmp_path / "Task09_Empty" / "dataset.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(AutoSegError, match="not valid JSON"):
        convert_msd(tmp_path / "Task09_Empty", tmp_path / "raw")
    (tmp_path / "Task09_Empty" / "dataset.json").write_text(json.dumps(_msd_json()), "utf-8")
    with pytest.raises(AutoSegError, match="not an MSD task folder"):
        convert_msd(tmp_path / "Task09_Empty", tmp_path / "raw")


def test_msd_refuses_v1_layout(tmp_path: Path) -> None:
    task = make_old_task(tmp_path, "Task10_Liver")
    with pytest.raises(AutoSegError, match="use convert_old_dataset"):
        convert_msd(task, tmp_path / "raw")


def test_old_dataset_copied_and_json_converted(tmp_path: Path) -> None:
    task = make_old_task(tmp_path)
    out = convert_old_dataset(task, tmp_path / "raw", "Dataset104_Liver")
    assert out == tmp_path / "raw" / "Dataset104_Liver"
    assert _names(out) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr"]
    for folder in ("imagesTr", "labelsTr", "imagesTs"):
        visible = [p for p in _names(task / folder) if not p.startswith("._")]
        assert _names(out / folder) == visible
        for name in visible:
            assert (out / folder / name).read_bytes() == (task / folder / name).read_bytes()
    data = _read_json(out)
    assert data["labels"] == {"background": 0, "PZ": 1, "TZ": 2}
    assert data["channel_names"] == {"0": "T2", "1": "ADC"}
    assert data["numTraining"] == 2
    assert data["file_ending"] == ".nii.gz"
    assert "training" not in data
    assert data["name"] == "PROSTATE"


@pytest.mark.parametrize("name", ["Liver", "Dataset104 Liver", "Dataset1_Liver", "Dataset104_a/b"])
def test_old_dataset_bad_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(AutoSegError, match="expected DatasetXXX_Name"):
        convert_old_dataset(make_old_task(tmp_path), tmp_path / "raw", name)


def test_old_dataset_refusals(tmp_path: Path) -> None:
    task = make_old_task(tmp_path)
    convert_old_dataset(task, tmp_path / "raw", "Dataset104_Liver")
    with pytest.raises(AutoSegError, match="already exists"):
        convert_old_dataset(task, tmp_path / "raw", "Dataset104_Liver")
    with pytest.raises(AutoSegError, match="already uses dataset id 104"):
        convert_old_dataset(task, tmp_path / "raw", "Dataset104_Other")
    assert _names(tmp_path / "raw") == ["Dataset104_Liver"]


def test_old_dataset_bad_inputs(tmp_path: Path) -> None:
    msd = make_msd_task(tmp_path)
    with pytest.raises(AutoSegError, match="use convert_msd"):
        convert_old_dataset(msd, tmp_path / "raw", "Dataset105_Prostate")
    task = make_old_task(tmp_path)
    (task / "labelsTr" / "liver_1.nii.gz").unlink()
    with pytest.raises(AutoSegError, match=r"no label for cases \['liver_1'\]"):
        convert_old_dataset(task, tmp_path / "raw", "Dataset104_Liver")
    (task / "dataset.json").unlink()
    with pytest.raises(AutoSegError, match=r"dataset\.json is missing"):
        convert_old_dataset(task, tmp_path / "raw", "Dataset104_Liver")
    assert not (tmp_path / "raw").exists() or _names(tmp_path / "raw") == []
