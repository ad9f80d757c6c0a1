"""Broken natural-image (PNG) datasets: each row is refused cleanly, naming the file.

A PNG's colour components are channels (RGB 3, RGBA 4), as in nnU-Net's natural-image reader, so a
file whose component count disagrees with ``channel_names`` must be refused with a line that names
it and says which fix applies; so must an "rgb_to_0_1" channel that holds no 8-bit values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from .conftest import BadInput, Workspace, assert_case_not_stored, refuse, row_commands

RAW = ("verify", "plan_and_preprocess")
PNG_SHAPE = (16, 20)


def _write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=array.ndim == 3), str(path))
    return path


def _photo_dataset(ws: Workspace, channel_names: dict[str, str], components: int) -> None:
    """Two valid cases ``case_000``/``case_001``: one PNG per case with ``components`` planes."""
    rng = np.random.default_rng(0)
    shape = (*PNG_SHAPE, components) if components > 1 else PNG_SHAPE
    for case in ("case_000", "case_001"):
        _write_png(ws.image_file(case, 0, ".png"), rng.integers(0, 255, shape).astype(np.uint8))
        label = np.zeros(PNG_SHAPE, dtype=np.uint8)
        label[4:9, 5:11], label[10:13, 5:11] = 1, 2
        _write_png(ws.label_file(case, ".png"), label)
    ws.write_dataset_json(
        {
            "channel_names": channel_names,
            "labels": {"background": 0, "a": 1, "b": 2},
            "numTraining": 2,
            "file_ending": ".png",
        }
    )


def rgba_file_for_rgb_channel_names(ws: Workspace) -> Path:
    _photo_dataset(ws, {"0": "R", "1": "G", "2": "B"}, components=3)
    rgba = np.random.default_rng(1).integers(0, 255, (*PNG_SHAPE, 4)).astype(np.uint8)
    return _write_png(ws.image_file("case_001", 0, ".png"), rgba)


def rgb_file_for_one_channel_name(ws: Workspace) -> Path:
    _photo_dataset(ws, {"0": "grey"}, components=1)
    rgb = np.random.default_rng(2).integers(0, 255, (*PNG_SHAPE, 3)).astype(np.uint8)
    return _write_png(ws.image_file("case_001", 0, ".png"), rgb)


def sixteen_bit_png_for_rgb_normalization(ws: Workspace) -> Path:
    _photo_dataset(ws, {"0": "rgb_to_0_1"}, components=1)
    grey16 = (np.arange(np.prod(PNG_SHAPE)).reshape(PNG_SHAPE) * 100).astype(np.uint16)
    return _write_png(ws.image_file("case_001", 0, ".png"), grey16)


def palette_png_label(ws: Workspace) -> Path:
    """Indexed-colour label PNGs (common in photo datasets) read as colour in both tools."""
    image_module = pytest.importorskip("PIL.Image")
    _photo_dataset(ws, {"0": "R", "1": "G", "2": "B"}, components=3)
    label = np.zeros(PNG_SHAPE, dtype=np.uint8)
    label[4:9, 5:11] = 1
    path = ws.label_file("case_001", ".png")
    palette = image_module.fromarray(label, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    palette.save(path)
    return path


def colour_predict_input_for_grey_model(ws: Workspace) -> Path:
    """The session's model has one grey channel; a 3-component input supplies three."""
    colour = np.random.default_rng(3).normal(0.0, 100.0, (10, 20, 20, 3)).astype(np.float32)
    ws.predict_dir.mkdir(parents=True, exist_ok=True)
    path = ws.predict_dir / "in_000_0000.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(colour, isVector=True), str(path))
    return path


TABLE = [
    BadInput(
        "rgba-for-rgb-channel-names", rgba_file_for_rgb_channel_names, RAW, case_id="case_001"
    ),
    BadInput("rgb-for-one-channel-name", rgb_file_for_one_channel_name, RAW, case_id="case_001"),
    BadInput("palette-png-label", palette_png_label, RAW, case_id="case_001"),
    BadInput("colour-input-for-grey-model", colour_predict_input_for_grey_model, ("predict",)),
    BadInput(
        "16-bit-png-for-rgb_to_0_1", sixteen_bit_png_for_rgb_normalization, RAW, case_id="case_001"
    ),
]


@pytest.mark.parametrize(("row", "command"), row_commands(TABLE))
def test_bad_natural_image_is_refused_naming_the_file(
    row: BadInput, command: str, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = row.build(workspace)
    outcome = refuse(workspace, capsys, command, bad)
    naming = [line for line in outcome.lines_naming(bad) if not line.startswith("WARNING")]
    assert len(naming) == 1, outcome.text  # one clear line for the one broken file
    if command == "plan_and_preprocess" and row.case_id:
        assert_case_not_stored(workspace, "case_001")


def test_component_count_and_fix_are_named(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = rgba_file_for_rgb_channel_names(workspace)
    (line,) = refuse(workspace, capsys, "verify", bad).lines_naming(bad)
    assert "case case_001 has 4 channel(s); the channel_names of this dataset list 3" in line
    assert f"{bad.name} holds 4 channels" in line
    assert "save the image with 3 (without alpha, or grey)" in line
