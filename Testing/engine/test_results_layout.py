"""The results layout's names: nnU-Net v2's folder and file names, built and read by one module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from autoseg import results_layout as layout

ENGINE = Path(layout.__file__).parent
SLICER_SIDE = [ENGINE.parent.parent / "AutoSegPredict", ENGINE.parent.parent / "AutoSegTrain"]


def test_model_folder_name_round_trip() -> None:
    name = layout.model_folder_name(
        "nnUNetTrainer_250epochs", "nnUNetResEncUNetMPlans", "3d_fullres"
    )
    assert name == "nnUNetTrainer_250epochs__nnUNetResEncUNetMPlans__3d_fullres"
    assert layout.split_model_folder_name(name) == (
        "nnUNetTrainer_250epochs",
        "nnUNetResEncUNetMPlans",
        "3d_fullres",
    )
    assert layout.is_model_folder_name(name)
    assert layout.configuration_of(name) == "3d_fullres"


@pytest.mark.parametrize("name", ["ensembles", "a__b", "a__b__c__d", "a____c", "fold_0"])
def test_other_names_are_no_model_folders(name: str) -> None:
    assert not layout.is_model_folder_name(name)


def test_split_refuses_another_name() -> None:
    with pytest.raises(ValueError, match="unpack"):
        layout.split_model_folder_name("crossval_results_folds_0")


def test_fold_folders() -> None:
    assert layout.fold_folder_name(3) == "fold_3"
    assert layout.fold_folder_name(layout.ALL_FOLDS) == "fold_all"
    assert layout.fold_of_folder("fold_12") == "12"
    assert layout.fold_of_folder("fold_all") == "all"
    assert layout.fold_of_folder("fold_x") is None
    assert layout.fold_of_folder("validation") is None


def test_selection_names_are_nnunets() -> None:
    assert layout.crossval_folder_name([0, 1, 2, 3, 4]) == "crossval_results_folds_0_1_2_3_4"
    assert Path("crossval_results_folds_0_1").match(layout.CROSSVAL_PATTERN)
    assert Path("nnUNetTrainer__nnUNetPlans__2d").match(layout.MODEL_FOLDER_PATTERN)
    assert layout.INFORMATION_FILE == "inference_information.json"
    assert layout.MODEL_FILES == ("plans.json", "dataset.json")


def _string_constants(path: Path) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"))
    return [
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        if isinstance(node.value.value, str)
    ]


def test_layout_names_are_defined_only_here() -> None:
    names = {
        layout.FINAL_CHECKPOINT,
        layout.BEST_CHECKPOINT,
        layout.LATEST_CHECKPOINT,
        layout.INFORMATION_FILE,
        layout.INSTRUCTIONS_FILE,
        layout.PLANS_FILE,
        layout.FOLD_PREFIX,
        layout.MODEL_FOLDER_PATTERN,
        layout.CROSSVAL_PREFIX,
        layout.FINGERPRINT_FILE,
        layout.POSTPROCESSING_FILE,
    }
    files = [*ENGINE.rglob("*.py"), *(f for d in SLICER_SIDE for f in d.rglob("*.py"))]
    again = {
        f"{path.relative_to(ENGINE.parent.parent)}: {value}"
        for path in files
        if path.name != "results_layout.py"
        for value in _string_constants(path)
        if value in names
    }
    assert not again, "define these names in results_layout.py only"


def _splits_or_joins_model_names(path: Path) -> bool:
    """Whether the file splits or joins with ``"__"`` (a model folder name built by hand)."""
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr in {"split", "rsplit"} and node.args:
            separator = node.args[0]
        elif node.func.attr == "join":
            separator = node.func.value
        else:
            continue
        if isinstance(separator, ast.Constant) and separator.value == "__":
            return True
    return False


def test_model_folder_names_are_split_and_joined_only_here() -> None:
    files = [*ENGINE.rglob("*.py"), *(f for d in SLICER_SIDE for f in d.rglob("*.py"))]
    by_hand = [
        str(path.relative_to(ENGINE.parent.parent))
        for path in files
        if path.name != "results_layout.py" and _splits_or_joins_model_names(path)
    ]
    assert not by_hand, "use results_layout.split_model_folder_name / model_folder_name"
