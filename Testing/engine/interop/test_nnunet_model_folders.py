"""Real nnU-Net v2 model folders predicted by AutoSeg in fp32 agree with nnunetv2's own predictions
(labels on >= 99.5 % of the voxels of every case, probabilities closely), in the input's geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from Testing.engine.interop.nnunet_reference import (
    CASCADE,
    CASES,
    IMAGES,
    LOWRES,
    MIN_AGREEMENT,
    MODELS,
    PLAIN,
    PLAIN_BEST_NO_TTA,
    PREDICTIONS,
    RESENC,
    TWO_D,
    agreement,
    case_files,
    reference_labels,
    reference_probabilities,
)

from autoseg.inference.model_folder import ModelFolder
from autoseg.inference.predictor import PredictionOptions, Predictor
from autoseg.interop.nnunet_plans import NNUNET_ORIGIN

# nnU-Net accumulates the sliding window in fp16 (AutoSeg in fp32), which moves probabilities by up
# to a few 1e-2 where only a tile's low-weight corner covers a voxel; elsewhere they agree to ~1e-4.
MAX_PROBABILITY_DIFFERENCE = 0.1
MEAN_PROBABILITY_DIFFERENCE = 1e-3

RUNS = {
    PLAIN: (PLAIN, {}),
    RESENC: (RESENC, {}),
    TWO_D: (TWO_D, {}),
    PLAIN_BEST_NO_TTA: (PLAIN, {"checkpoint": "checkpoint_best.pth", "step": 0.75, "tta": False}),
}


def _predictor(model: str, options: dict, *, folds=None, probabilities: bool = True) -> Predictor:
    folder = ModelFolder.open(
        MODELS / model, folds, options.get("checkpoint", "checkpoint_final.pth")
    )
    assert folder.origin == NNUNET_ORIGIN
    settings = PredictionOptions(
        step=options.get("step", 0.5),
        mirror_tta=options.get("tta", True),
        device="cpu",
        save_probabilities=probabilities,
        precision="fp32",
    )
    return Predictor.from_model_folder(folder, settings)


def _check_case(
    result, run: str, case: str, written: Path, max_difference: float = MAX_PROBABILITY_DIFFERENCE
) -> None:
    assert agreement(result.segmentation, reference_labels(run, case)) >= MIN_AGREEMENT
    source, ours = sitk.ReadImage(str(case_files(case)[0])), sitk.ReadImage(str(written))
    theirs = sitk.ReadImage(str(PREDICTIONS / run / f"{case}.nii.gz"))
    for image in (source, theirs):
        assert ours.GetSize() == image.GetSize()
        np.testing.assert_allclose(ours.GetSpacing(), image.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(ours.GetOrigin(), image.GetOrigin(), atol=1e-5)
        np.testing.assert_allclose(ours.GetDirection(), image.GetDirection(), atol=1e-6)
    if result.probabilities is not None:
        reference = reference_probabilities(run, case)
        assert result.probabilities.shape == reference.shape
        difference = np.abs(result.probabilities - reference)
        assert difference.max() <= max_difference
        assert difference.mean() <= MEAN_PROBABILITY_DIFFERENCE


@pytest.mark.parametrize("run", RUNS)
def test_fp32_predictions_agree_with_nnunetv2(run: str, tmp_path: Path) -> None:
    model, options = RUNS[run]
    probabilities = (PREDICTIONS / run / f"{CASES[0]}.npz").is_file()
    predictor = _predictor(model, options, probabilities=probabilities)
    if options.get("tta", True):  # the checkpoint's inference_allowed_mirroring_axes
        assert predictor.spec.mirror_axes == predictor.model.mirror_axes != ()
    else:
        assert predictor.spec.mirror_axes is None
    for case in CASES:
        written = tmp_path / f"{case}.nii.gz"
        result = predictor.predict_files(case_files(case), written)
        _check_case(result, run, case, written)


def _predict_cascade(tmp_path: Path) -> list[tuple[str, object, Path]]:
    """The cascade given nnunetv2's own lowres segmentations (the inputs nnunetv2 had)."""
    predictor = _predictor(CASCADE, {})
    assert predictor.model.folds == ("all",)
    assert predictor.model.is_cascade
    results = []
    for case in CASES:
        written = tmp_path / f"{case}.nii.gz"
        previous = PREDICTIONS / LOWRES / f"{case}.nii.gz"
        result = predictor.predict_files(
            case_files(case), written, previous_segmentation_file=previous
        )
        results.append((case, result, written))
    return results


def test_the_cascade_agrees_given_nnunets_lowres_predictions(tmp_path: Path) -> None:
    for case, result, written in _predict_cascade(tmp_path):
        _check_case(result, CASCADE, case, written, max_difference=1.0)


def test_the_cascade_probabilities_agree_everywhere(tmp_path: Path) -> None:
    for case, result, written in _predict_cascade(tmp_path):
        _check_case(result, CASCADE, case, written)


def test_the_lowres_stage_agrees(tmp_path: Path) -> None:
    predictor = _predictor(LOWRES, {}, probabilities=False)
    for case in CASES:
        written = tmp_path / f"{case}.nii.gz"
        _check_case(predictor.predict_files(case_files(case), written), LOWRES, case, written)


def test_the_fixture_images_are_what_the_tests_expect() -> None:
    assert sorted(p.name for p in IMAGES.iterdir()) == sorted(
        f"{case}_{c:04d}.nii.gz" for case in CASES for c in range(2)
    )
