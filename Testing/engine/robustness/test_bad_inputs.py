"""The table of broken inputs: each row is refused cleanly by every command that reads it.

One row per bad-input class (see conftest.py for how to add one). Builders return the file the
error must name; ``refused`` lists the commands that must stop with a one-line error, ``warned`` those
that must go on with a WARNING line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from .conftest import (
    SHAPE,
    BadInput,
    Workspace,
    assert_case_not_stored,
    refuse,
    row_commands,
    run_cli,
    truncate,
    warn,
    write_volume,
)

RAW = ("verify", "plan_and_preprocess")
PLANNED = ("preprocess",)  # the dataset was planned while valid, then broken


def _label_with(ws: Workspace, value: float, dtype: str) -> Path:
    ws.raw_dataset()
    seg = ws.valid_label().astype(dtype)
    seg[2, 2, 2] = value
    return write_volume(ws.label_file("case_001"), seg)


def undeclared_label(ws: Workspace) -> Path:
    return _label_with(ws, 3, "uint8")


def negative_label(ws: Workspace) -> Path:
    return _label_with(ws, -1, "int16")


def fractional_label(ws: Workspace) -> Path:
    return _label_with(ws, 1.2, "float32")


def nan_image_mha(ws: Workspace) -> Path:
    ws.raw_dataset(file_ending=".mha")
    image = np.full(SHAPE, np.nan, dtype=np.float32)
    return write_volume(ws.image_file("case_001", file_ending=".mha"), image)


def label_size_mismatch(ws: Workspace) -> Path:
    ws.raw_dataset()
    return write_volume(ws.label_file("case_001"), ws.valid_label()[:, :-2])


def label_spacing_mismatch(ws: Workspace) -> Path:
    ws.raw_dataset()
    return write_volume(ws.label_file("case_001"), ws.valid_label(), spacing=(2.0, 1.0, 1.0))


def truncated_image(ws: Workspace) -> Path:
    ws.raw_dataset()
    return truncate(ws.image_file("case_001"))


def truncated_label(ws: Workspace) -> Path:
    ws.raw_dataset()
    return truncate(ws.label_file("case_001"))


def image_2d_in_3d_dataset(ws: Workspace) -> Path:
    ws.raw_dataset()
    return write_volume(ws.image_file("case_001"), np.ones(SHAPE[1:], dtype=np.float32))


def missing_channel_file(ws: Workspace) -> Path:
    ws.raw_dataset(channels=2)
    path = ws.image_file("case_001", channel=1)
    path.unlink()
    return path


def wrong_file_ending(ws: Workspace) -> Path:
    ws.raw_dataset()
    path = ws.image_file("case_001")
    return path.rename(path.with_name(path.name.removesuffix(".gz")))


def empty_label_file(ws: Workspace) -> Path:
    ws.raw_dataset()
    path = ws.label_file("case_001")
    path.write_bytes(b"")
    return path


def garbage_image_file(ws: Workspace) -> Path:
    ws.raw_dataset()
    path = ws.image_file("case_001")
    path.write_bytes(b"this is not an image" * 50)
    return path


def four_d_image_in_one_channel_dataset(ws: Workspace) -> Path:
    ws.raw_dataset()
    # a 4D file (two volumes) where dataset.json declares one channel
    volume = sitk.GetImageFromArray(np.ones(SHAPE, dtype=np.float32))
    path = ws.image_file("case_001")
    sitk.WriteImage(sitk.JoinSeries([volume, volume]), str(path))
    return path


def dataset_json_invalid(ws: Workspace) -> Path:
    ws.raw_dataset()
    path = ws.dataset_dir / "dataset.json"
    path.write_text('{"labels": ', encoding="utf-8")
    return path


def no_foreground_anywhere(ws: Workspace) -> Path:
    ws.raw_dataset()
    for case in ("case_000", "case_001"):
        write_volume(ws.label_file(case), np.zeros(SHAPE, dtype=np.uint8))
    return ws.dataset_dir / "labelsTr"


def constant_image(ws: Workspace) -> Path:
    ws.raw_dataset()
    return write_volume(ws.image_file("case_001"), np.zeros(SHAPE, dtype=np.float32))


def folder_named_like_an_image(ws: Workspace) -> Path:
    ws.raw_dataset()
    path = ws.image_file("case_001")
    path.unlink()
    path.mkdir()
    return path


def vector_label(ws: Workspace) -> Path:
    ws.raw_dataset()
    path = ws.label_file("case_001")
    seg = sitk.GetImageFromArray(np.zeros((*SHAPE, 3), np.uint8), isVector=True)
    sitk.WriteImage(seg, str(path))
    return path


def nan_in_nifti_image(ws: Workspace) -> Path:
    ws.raw_dataset()
    image = np.random.default_rng(2).normal(100.0, 10.0, size=SHAPE).astype(np.float32)
    image[3:5, 4:8, 4:8] = np.nan
    return write_volume(ws.image_file("case_001"), image)


def planned_then_undeclared_label(ws: Workspace) -> Path:
    ws.planned_dataset()
    seg = ws.valid_label()
    seg[2, 2, 2] = 5
    return write_volume(ws.label_file("case_001"), seg)


def planned_then_truncated_image(ws: Workspace) -> Path:
    ws.planned_dataset()
    return truncate(ws.image_file("case_001"))


def planned_then_nan_image_mha(ws: Workspace) -> Path:
    ws.planned_dataset(file_ending=".mha")
    image = np.ones(SHAPE, dtype=np.float32)
    image[2] = np.inf
    return write_volume(ws.image_file("case_001", file_ending=".mha"), image)


def planned_then_label_size_mismatch(ws: Workspace) -> Path:
    ws.planned_dataset()
    return write_volume(ws.label_file("case_001"), ws.valid_label()[:-1])


def truncated_preprocessed_case(ws: Workspace) -> Path:
    ws.planned_dataset(preprocess=True)
    (path,) = (ws.roots.preprocessed / "Dataset950_Robust").glob("*3d_fullres/case_001.npy")
    return truncate(path, 0.5)


def truncated_predict_input(ws: Workspace) -> Path:
    return truncate(ws.predict_inputs() / "in_000_0000.nii.gz")


def predict_input_2d_for_3d_model(ws: Workspace) -> Path:
    return write_volume(ws.predict_dir / "in_000_0000.nii.gz", np.ones((20, 20), np.float32))


def predict_input_4d(ws: Workspace) -> Path:
    volume = sitk.GetImageFromArray(np.ones((10, 20, 20), np.float32))
    path = ws.predict_dir / "in_000_0000.nii.gz"
    ws.predict_dir.mkdir(parents=True)
    sitk.WriteImage(sitk.JoinSeries([volume, volume]), str(path))
    return path


def empty_predict_input(ws: Workspace) -> Path:
    path = ws.predict_inputs() / "in_000_0000.nii.gz"
    path.write_bytes(b"")
    return path


def fractional_prediction(ws: Workspace) -> Path:
    ws.evaluation_folders()
    seg = ws.valid_label().astype(np.float32)
    seg[0, 0, 0] = 1.5
    return write_volume(ws.prediction_dir / "case_000.nii.gz", seg)


def undeclared_reference_label(ws: Workspace) -> Path:
    ws.evaluation_folders()
    seg = ws.valid_label()
    seg[0, 0, 0] = 7
    return write_volume(ws.reference_dir / "case_000.nii.gz", seg)


def prediction_spacing_mismatch(ws: Workspace) -> Path:
    ws.evaluation_folders()
    path = ws.prediction_dir / "case_000.nii.gz"
    return write_volume(path, ws.valid_label(), spacing=(2.0, 1.0, 1.0))


def truncated_prediction(ws: Workspace) -> Path:
    ws.evaluation_folders()
    return truncate(ws.prediction_dir / "case_000.nii.gz")


def truncated_reference(ws: Workspace) -> Path:
    ws.evaluation_folders()
    return truncate(ws.reference_dir / "case_000.nii.gz")


def background_only_label(ws: Workspace) -> Path:
    ws.raw_dataset()
    return write_volume(ws.label_file("case_001"), np.zeros(SHAPE, dtype=np.uint8))


def label_origin_shifted(ws: Workspace) -> Path:
    ws.raw_dataset()
    return write_volume(ws.label_file("case_001"), ws.valid_label(), origin=(5.0, 0.0, 0.0))


TABLE = [
    BadInput("undeclared-label", undeclared_label, refused=RAW, case_id="case_001"),
    BadInput("negative-label", negative_label, refused=RAW, case_id="case_001"),
    BadInput("fractional-label", fractional_label, refused=RAW, case_id="case_001"),
    BadInput("nan-image-mha", nan_image_mha, refused=RAW, case_id="case_001"),
    BadInput("label-size-mismatch", label_size_mismatch, refused=RAW, case_id="case_001"),
    BadInput("label-spacing-mismatch", label_spacing_mismatch, refused=RAW, case_id="case_001"),
    BadInput("2d-image-in-3d-dataset", image_2d_in_3d_dataset, refused=RAW, case_id="case_001"),
    BadInput("4d-image-in-1-channel-dataset", four_d_image_in_one_channel_dataset, refused=RAW),
    BadInput("truncated-image", truncated_image, refused=RAW, case_id="case_001"),
    BadInput("truncated-label", truncated_label, refused=RAW, case_id="case_001"),
    BadInput("truncated-predict-input", truncated_predict_input, refused=("predict",)),
    BadInput("2d-predict-input-for-3d-model", predict_input_2d_for_3d_model, refused=("predict",)),
    BadInput("4d-predict-input", predict_input_4d, refused=("predict",)),
    BadInput("empty-predict-input", empty_predict_input, refused=("predict",)),
    BadInput("truncated-prediction", truncated_prediction, refused=("evaluate",)),
    BadInput("fractional-prediction", fractional_prediction, refused=("evaluate",)),
    BadInput("undeclared-reference-label", undeclared_reference_label, refused=("evaluate",)),
    BadInput("prediction-spacing-mismatch", prediction_spacing_mismatch, refused=("evaluate",)),
    BadInput("truncated-reference", truncated_reference, refused=("evaluate",)),
    BadInput("missing-channel-file", missing_channel_file, refused=RAW),
    BadInput("wrong-file-ending", wrong_file_ending, refused=RAW),
    BadInput("empty-label-file", empty_label_file, refused=RAW, case_id="case_001"),
    BadInput("garbage-image-file", garbage_image_file, refused=RAW, case_id="case_001"),
    BadInput("dataset-json-invalid", dataset_json_invalid, refused=RAW),
    BadInput(
        "undeclared-label-after-planning",
        planned_then_undeclared_label,
        refused=PLANNED,
        case_id="case_001",
    ),
    BadInput(
        "truncated-image-after-planning",
        planned_then_truncated_image,
        refused=PLANNED,
        case_id="case_001",
    ),
    BadInput(
        "inf-image-mha-after-planning",
        planned_then_nan_image_mha,
        refused=PLANNED,
        case_id="case_001",
    ),
    BadInput(
        "label-size-after-planning",
        planned_then_label_size_mismatch,
        refused=PLANNED,
        case_id="case_001",
    ),
    BadInput("truncated-preprocessed-case", truncated_preprocessed_case, refused=("train",)),
    BadInput("no-foreground-anywhere", no_foreground_anywhere, refused=RAW),
    BadInput("constant-image", constant_image, warned=("verify",)),
    BadInput("folder-named-like-an-image", folder_named_like_an_image, refused=RAW),
    BadInput("label-with-3-components", vector_label, refused=RAW, case_id="case_001"),
    BadInput("nan-in-nifti-image", nan_in_nifti_image, warned=("verify",)),
    BadInput("background-only-label", background_only_label, warned=("verify",)),
    BadInput("label-origin-shifted", label_origin_shifted, warned=("verify",)),
]


@pytest.mark.parametrize(("row", "command"), row_commands(TABLE))
def test_bad_input_is_handled_cleanly(
    row: BadInput, command: str, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = row.build(workspace)
    if command in row.warned:
        warn(workspace, capsys, command, bad)
        return
    refuse(workspace, capsys, command, bad)
    if command in ("plan_and_preprocess", "preprocess") and row.case_id:
        assert_case_not_stored(workspace, row.case_id)


def test_preprocessing_reads_nan_in_nifti_as_zero_as_verify_warns(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """What verify's warning promises is what happens: the NaN block is preprocessed as 0."""
    nan_in_nifti_image(workspace)
    outcome = run_cli(capsys, workspace.argv("plan_and_preprocess"))
    assert outcome.code == 0, outcome.text
    folder = workspace.roots.preprocessed / "Dataset950_Robust"
    (data_file,) = folder.glob("*3d_fullres/case_001.npy")
    data = np.load(data_file)
    assert np.isfinite(data).all()
