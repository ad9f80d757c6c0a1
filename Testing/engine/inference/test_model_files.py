"""model_files: the torch-free check of a model folder that predict and the Slicer panel share."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autoseg.errors import AutoSegError
from autoseg.inference.model_files import open_model_files, previous_stage_folder

RESULTS = (
    Path(__file__).resolve().parents[2]
    / "data"
    / "nnunet_reference"
    / "results"
    / "Dataset990_AutoSegInterop"
)
FULLRES = "nnUNetTrainer__nnUNetPlans__3d_fullres"
CASCADE = "nnUNetTrainer__nnUNetPlans__3d_cascade_fullres"


def test_importing_the_check_does_not_load_torch() -> None:
    """The Slicer Predict module imports it inside Slicer's process, where torch must not load."""
    code = (
        "import sys, autoseg.inference.model_files, autoseg.inference.recommendation; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_nnunet_model_folders_pass_with_their_folds_and_origin() -> None:
    files = open_model_files(RESULTS / FULLRES)
    assert (files.origin, files.configuration, files.folds) == ("nnunet", "3d_fullres", ("0",))
    assert files.dataset.channel_names == ("CT", "MR")
    assert not files.is_cascade
    cascade = open_model_files(RESULTS / CASCADE)
    assert cascade.folds == ("all",)
    assert cascade.is_cascade
    assert previous_stage_folder(cascade.path, str(cascade.config.previous_stage)) == (
        RESULTS / "nnUNetTrainer__nnUNetPlans__3d_lowres"
    )


def _copy(name: str, target: Path) -> Path:
    folder = target / RESULTS.name / name
    shutil.copytree(RESULTS / name, folder)
    return folder


def test_a_cascade_without_its_previous_stage_is_refused(tmp_path: Path) -> None:
    cascade = open_model_files(_copy(CASCADE, tmp_path))
    with pytest.raises(AutoSegError, match=r"3d_lowres.*does not exist"):
        previous_stage_folder(cascade.path, str(cascade.config.previous_stage))


def test_plans_autoseg_cannot_reproduce_are_refused_before_any_checkpoint(tmp_path: Path) -> None:
    folder = _copy(FULLRES, tmp_path)
    plans = json.loads((folder / "plans.json").read_text(encoding="utf-8"))
    architecture = plans["configurations"]["3d_fullres"]["architecture"]
    architecture["network_class_name"] = "my_package.MyTransformerUNet"
    (folder / "plans.json").write_text(json.dumps(plans), encoding="utf-8")
    with pytest.raises(AutoSegError, match="MyTransformerUNet"):
        open_model_files(folder)


def test_missing_folds_and_files_are_named(tmp_path: Path) -> None:
    folder = _copy(FULLRES, tmp_path)
    with pytest.raises(AutoSegError, match=r"fold_3.*missing"):
        open_model_files(folder, folds=[3])
    (folder / "dataset.json").unlink()
    with pytest.raises(AutoSegError, match=r"dataset\.json is missing"):
        open_model_files(folder)
    renamed = folder.rename(folder.parent / "my_model")
    with pytest.raises(AutoSegError, match="<trainer>__<plans>__<configuration>"):
        open_model_files(renamed)
