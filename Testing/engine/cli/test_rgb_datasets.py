"""nnU-Net's natural-image datasets, both spellings, through every command.

nnU-Net's own RGB examples store one RGB file per case (``CASE_0000.png``) with ``channel_names``
R, G, B; the same data may also come as one grey file per channel. Both must verify, plan,
preprocess, train and predict, and the prediction must be a PNG of the input's size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from autoseg.cli import main
from autoseg.preprocessing.storage import load_case

DATASET_ID = 951
DATASET = "Dataset951_Photos"
RGB_NAMES = {"0": "R", "1": "G", "2": "B"}
SHAPE = (16, 20)  # rows x columns


def _photo(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An 8-bit RGB image with a darker rectangle, and the rectangle as label 1."""
    label = np.zeros(shape, dtype=np.uint8)
    label[shape[0] // 4 : shape[0] // 2 + 2, shape[1] // 4 : shape[1] // 2 + 3] = 1
    rgb = rng.integers(120, 255, size=(*shape, 3)).astype(np.uint8)
    rgb[label == 1] //= 3
    return rgb, label


def _write_case(folder: Path, case_id: str, rgb: np.ndarray, spelling: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if spelling == "rgb":
        image = sitk.GetImageFromArray(rgb, isVector=True)
        sitk.WriteImage(image, str(folder / f"{case_id}_0000.png"))
        return
    for channel in range(3):
        image = sitk.GetImageFromArray(np.ascontiguousarray(rgb[..., channel]))
        sitk.WriteImage(image, str(folder / f"{case_id}_{channel:04d}.png"))


def _raw_dataset(raw: Path, spelling: str, channel_names: dict[str, str], cases: int = 3) -> Path:
    folder = raw / DATASET
    rng = np.random.default_rng(7)
    for case in range(cases):
        rgb, label = _photo(rng, SHAPE)
        _write_case(folder / "imagesTr", f"photo{case}", rgb, spelling)
        (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(
            sitk.GetImageFromArray(label), str(folder / "labelsTr" / f"photo{case}.png")
        )
    dataset = {
        "channel_names": channel_names,
        "labels": {"background": 0, "rectangle": 1},
        "numTraining": cases,
        "file_ending": ".png",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset), encoding="utf-8")
    return folder


def _roots(tmp_path: Path) -> list[str]:
    return [
        *("--raw", str(tmp_path / "raw"), "--preprocessed", str(tmp_path / "preprocessed")),
        *("--results", str(tmp_path / "results")),
    ]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, f"autoseg {' '.join(argv)} failed:\n{out}{err}"
    return out + err


def _plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    roots = _roots(tmp_path)
    _run(["verify", "-d", str(DATASET_ID), "-np", "1", *roots], capsys)
    args = ["plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-np", "1", "-npfp", "1"]
    _run([*args, *roots, "--progress", "none"], capsys)
    plans = tmp_path / "preprocessed" / DATASET / "AutoSegPlans.json"
    return json.loads(plans.read_text(encoding="utf-8"))


@pytest.mark.parametrize("spelling", ["rgb", "grey"])
def test_rgb_dataset_trains_and_predicts_a_png_of_the_input_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    _raw_dataset(tmp_path / "raw", spelling, RGB_NAMES)
    plans = _plan(tmp_path, capsys)
    schemes = plans["configurations"]["2d"]["normalization_schemes"]
    assert schemes == ["ZScore", "ZScore", "ZScore"]  # as nnU-Net: R, G, B are plain names
    train = ["train", str(DATASET_ID), "2d", "all", "--epochs", "1", "--iterations-per-epoch", "2"]
    train += ["--val-iterations", "1", "--num-workers", "0", "-device", "cpu", "--quiet"]
    _run([*train, *_roots(tmp_path)], capsys)

    inputs, outputs = tmp_path / "inputs", tmp_path / "outputs"
    odd_shape = (23, 31)  # another size than the training images
    rgb, _ = _photo(np.random.default_rng(1), odd_shape)
    _write_case(inputs, "new", rgb, spelling)
    model = tmp_path / "results" / DATASET / "AutoSegTrainer__AutoSegPlans__2d"
    predict = ["predict", "-i", str(inputs), "-o", str(outputs), "-m", str(model), "-f", "all"]
    _run([*predict, "-device", "cpu", "--disable_tta", "--progress", "none"], capsys)

    written = sitk.ReadImage(str(outputs / "new.png"))
    assert written.GetNumberOfComponentsPerPixel() == 1
    assert written.GetPixelID() == sitk.sitkUInt8
    assert sitk.GetArrayFromImage(written).shape == odd_shape
    assert set(np.unique(sitk.GetArrayFromImage(written))) <= {0, 1}

    # The other spelling of the same input is the same input: the same prediction.
    other_inputs, other_outputs = tmp_path / "other_inputs", tmp_path / "other_outputs"
    _write_case(other_inputs, "new", rgb, "grey" if spelling == "rgb" else "rgb")
    predict[2], predict[4] = str(other_inputs), str(other_outputs)
    _run([*predict, "-device", "cpu", "--disable_tta", "--progress", "none"], capsys)
    again = sitk.GetArrayFromImage(sitk.ReadImage(str(other_outputs / "new.png")))
    np.testing.assert_array_equal(again, sitk.GetArrayFromImage(written))


def test_grey_png_with_rgb_normalization_divides_by_255(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _raw_dataset(tmp_path / "raw", "grey", {"0": "rgb_to_0_1"})
    for extra in sorted((folder / "imagesTr").glob("*_000[12].png")):
        extra.unlink()  # one grey channel per case
    plans = _plan(tmp_path, capsys)
    assert plans["configurations"]["2d"]["normalization_schemes"] == ["RGBTo01"]
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "imagesTr" / "photo0_0000.png")))
    data, _, _ = load_case(tmp_path / "preprocessed" / DATASET / "AutoSegPlans_2d", "photo0")
    assert data.shape == (1, 1, *SHAPE)
    np.testing.assert_allclose(data[0, 0], raw / 255.0, rtol=1e-6)


def test_one_channel_name_for_an_rgb_file_names_the_components(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _raw_dataset(tmp_path / "raw", "rgb", {"0": "photo"})
    code = main(["verify", "-d", str(DATASET_ID), "-np", "1", *_roots(tmp_path)])
    out, err = capsys.readouterr()
    errors = [line for line in (out + err).splitlines() if line.startswith("ERROR")]
    assert code == 1
    assert len(errors) == 3  # one line per case
    assert "photo0_0000.png holds 3 channels" in errors[0]
    assert "name each in the training dataset's channel_names (e.g. R, G, B)" in errors[0]


def test_files_listed_with_environment_variables_are_found_by_every_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As nnU-Net expands ``$VAR`` in dataset.json's ``dataset`` listing, so do verify and every
    stage of plan_and_preprocess (they all get the command line's environment)."""
    folder = _raw_dataset(tmp_path / "raw", "rgb", RGB_NAMES)
    photos = tmp_path / "photos elsewhere"
    (folder / "imagesTr").rename(photos)
    monkeypatch.setenv("AUTOSEG_TEST_PHOTOS", str(photos))
    data = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    data["dataset"] = {
        f"photo{i}": {
            "images": [f"${{AUTOSEG_TEST_PHOTOS}}/photo{i}_0000.png"],
            "label": f"labelsTr/photo{i}.png",
        }
        for i in range(3)
    }
    (folder / "dataset.json").write_text(json.dumps(data), encoding="utf-8")
    plans = _plan(tmp_path, capsys)
    assert plans["configurations"]["2d"]["normalization_schemes"] == ["ZScore"] * 3
    stored = tmp_path / "preprocessed" / DATASET / "AutoSegPlans_2d"
    assert sorted(p.name for p in stored.glob("*.npy") if "_seg" not in p.name) == [
        "photo0.npy",
        "photo1.npy",
        "photo2.npy",
    ]
