"""``autoseg predict`` on nnU-Net v2 model folders as nnU-Net users type it (-m, or -d/-c/-tr/-p with
nnUNet_results set; -f, -chk, --save_probabilities, -step_size, --disable_tta; cascades), in the
default precision, and the refusals (one line, non-zero exit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from Testing.engine.interop.nnunet_reference import (
    CASCADE,
    CASES,
    DATASET,
    IMAGES,
    MIN_AGREEMENT,
    PLAIN,
    PLAIN_BEST_NO_TTA,
    RESENC,
    RESULTS,
    CodeOnLoad,
    agreement,
    reference_labels,
)

from autoseg.cli import main

QUIET = ["-device", "cpu", "--progress", "none"]


def _predict(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["predict", "-i", str(IMAGES), *argv, *QUIET])
    out, err = capsys.readouterr()
    return code, out, err


def _overall_agreement(out: Path, run: str) -> float:
    """Label agreement over all voxels of all cases (the default-precision target)."""
    same = total = 0
    for case in CASES:
        ours = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{case}.nii.gz")))
        reference = reference_labels(run, case)
        same += round(agreement(ours, reference) * reference.size)
        total += reference.size
    return same / total


@pytest.fixture
def nnunet_results(monkeypatch: pytest.MonkeyPatch) -> Path:
    """nnUNet_results pointing at the fixture; no AutoSeg variable to take precedence."""
    for name in ("AUTOSEG_RAW", "AUTOSEG_PREPROCESSED", "AUTOSEG_RESULTS", "nnUNet_raw"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("nnUNet_results", str(RESULTS))
    return RESULTS


def test_m_with_probabilities_matches_nnunetv2(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    model = RESULTS / DATASET / RESENC
    code, stdout, err = _predict(
        capsys, "-o", str(out), "-m", str(model), "-f", "0", "--save_probabilities"
    )
    assert (code, err) == (0, "")
    assert "Predicted 3 case(s)" in stdout
    assert _overall_agreement(out, RESENC) >= MIN_AGREEMENT
    for case in CASES:
        with np.load(out / f"{case}.npz") as data:
            assert data["probabilities"].shape[0] == 3
    settings = json.loads((out / "predict_args.json").read_text())
    assert (settings["origin"], settings["folds"]) == ("nnunet", ["0"])
    assert json.loads((out / "plans.json").read_text())["plans_name"] == "nnUNetResEncUNetMPlans"


def test_dataset_and_names_find_the_nnunet_folder(tmp_path: Path, capsys, nnunet_results) -> None:
    out = tmp_path / "out"
    flags = ["-d", "990", "-c", "3d_fullres", "-tr", "nnUNetTrainer", "-p", "nnUNetPlans"]
    more = ["-chk", "checkpoint_best.pth", "--disable_tta", "-step_size", "0.75"]
    code, _, err = _predict(capsys, "-o", str(out), *flags, *more)
    assert (code, err) == (0, "")
    settings = json.loads((out / "predict_args.json").read_text())
    assert settings["model_dir"] == str(nnunet_results / DATASET / PLAIN)
    assert settings["checkpoint"] == "checkpoint_best.pth"
    assert (settings["mirror_tta"], settings["step"]) == (False, 0.75)
    assert _overall_agreement(out, PLAIN_BEST_NO_TTA) >= MIN_AGREEMENT


def test_a_cascade_predicts_its_lowres_stage_first(tmp_path: Path, capsys, nnunet_results) -> None:
    """nnU-Net's defaults: -d and -c only (trainer nnUNetTrainer, plans nnUNetPlans), fold all."""
    out = tmp_path / "out"
    code, _, err = _predict(capsys, "-o", str(out), "-d", "990", "-c", "3d_cascade_fullres")
    assert (code, err) == (0, "")
    assert sorted(p.name for p in (out / ".lowres").glob("*.nii.gz")) == [
        f"{c}.nii.gz" for c in CASES
    ]
    assert _overall_agreement(out, CASCADE) >= MIN_AGREEMENT


def _one_line_failure(capsys, model: Path, tmp_path: Path) -> str:
    code, _, err = _predict(capsys, "-o", str(tmp_path / "out"), "-m", str(model))
    assert code != 0
    assert err.count("\n") == 1
    assert "Traceback" not in err
    return err


def test_an_unknown_network_class_is_one_line(tmp_path: Path, capsys, model_copy) -> None:
    model = model_copy(PLAIN)
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"] = "my.nets.MedNeXt"
    (model / "plans.json").write_text(json.dumps(plans))
    err = _one_line_failure(capsys, model, tmp_path)
    assert "network_class_name" in err
    assert "my.nets.MedNeXt" in err


def test_an_unsupported_normalization_is_one_line(tmp_path: Path, capsys, model_copy) -> None:
    model = model_copy(PLAIN)
    plans = json.loads((model / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["normalization_schemes"][1] = "MyNormalization"
    (model / "plans.json").write_text(json.dumps(plans))
    err = _one_line_failure(capsys, model, tmp_path)
    assert "normalization_schemes" in err
    assert "MyNormalization" in err


def test_a_checkpoint_needing_an_arbitrary_class_is_one_line(
    tmp_path: Path, capsys, model_copy
) -> None:
    model = model_copy(PLAIN)
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    state = {"network_weights": {}, "init_args": {"configuration": "3d_fullres"}, "x": CodeOnLoad()}
    torch.save(state, checkpoint)
    err = _one_line_failure(capsys, model, tmp_path)
    assert str(checkpoint) in err
    assert "refused to load" in err
