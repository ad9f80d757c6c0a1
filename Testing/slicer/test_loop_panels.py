"""Improve model in the Train panel and the Predict panel following it, with the strict stand-ins
of test_module_widgets (real MRML and files; the engine's run replaced by a stub whose results
the test writes as the engine would). test_loop.py runs the same loop with the real engine."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from Testing.slicer.model_fixtures import make_model
from Testing.slicer.test_module_widgets import (
    StubRun,
    _train_widget_with_a_case,
    app,
    click,
    tick,
)

from AutoSegCoreLib.preferences import KEYS

__all__ = ["app"]  # the fixture, used by name

COMPARISON = {
    "fold": "all",
    "case_sets": {
        "added": {
            "cases": ["case_001"],
            "previous": {"Dice": {"organ": 0.5, "lesion": 0.25}, "mean": 0.375},
            "new": {"Dice": {"organ": 0.75, "lesion": 0.5}, "mean": 0.625},
        },
        "validation": {"cases": [], "previous": None, "new": None},
    },
}


class FinishedRun(StubRun):
    """A run that ends normally on its second tick (StubRun's states, not cancelled)."""

    cancelled = False


def test_improve_model_runs_the_job_shows_the_comparison_and_switches_predict(
    app, scene, tmp_path: Path
) -> None:
    predict = app.open(app.load("AutoSegPredict").AutoSegPredictWidget)
    train = _train_widget_with_a_case(app, scene, tmp_path)
    improve_panel = sys.modules["AutoSegTrainLib.improve_panel"]
    app.monkeypatch.setattr(improve_panel, "ensure_engine_dependencies", app._install_check)
    app.monkeypatch.setattr(app.panel("AutoSegTrain"), "TrainingRun", FinishedRun)
    ui, dataset = train.ui, train._dataset.folder.name
    assert not ui.improveModelButton.enabled
    assert ui.improveModelButton.toolTip.startswith(
        f"{dataset} has no trained 3d_fullres model yet"
    )

    model = make_model(tmp_path / "results" / dataset, folds=("all",), channels=("CT",))
    ui.use2dCheckBox.checked = True  # two configurations: which model is meant?
    assert "one configuration at a time" in ui.improveModelButton.toolTip
    ui.use2dCheckBox.checked = False
    assert ui.improveModelButton.enabled
    assert ui.improveModelButton.toolTip.startswith("Fine-tune the trained model")

    ui.foldsLineEdit.text = "all"
    ui.fineTuningEpochsSpinBox.value = 5
    assert train._parameterNode.fineTuningEpochs == 5
    click(ui.improveModelButton)
    assert app.install_checks[-1] == ("AutoSegTrain", None)
    plan, fold = FinishedRun.latest.steps
    assert plan.args[plan.args.index("--plans-from") + 1] == str(model)
    assert fold.args[fold.args.index("--from-model") + 1] == str(model)
    assert fold.args[fold.args.index("--epochs") + 1] == "5"
    assert not ui.improveModelButton.enabled  # running
    assert ui.cancelTrainingButton.enabled

    # What the engine leaves: the previous model kept as version 1, the fold's comparison.
    shutil.copytree(model, tmp_path / "kept")
    shutil.move(tmp_path / "kept", model / "versions" / "1")
    (model / "fold_all" / "validation").mkdir()
    (model / "fold_all" / "validation" / "comparison.json").write_text(json.dumps(COMPARISON))
    tick(train)
    tick(train)
    assert train._run is None
    table = [
        "Fold all: Dice, previous -> new model",
        "  added (1 cases): mean 0.375 -> 0.625, organ 0.500 -> 0.750, lesion 0.250 -> 0.500",
        "  validation: none",
    ]
    assert ui.comparisonLabel.text.splitlines() == table
    assert ui.logTextEdit.plainText.splitlines()[-3:] == table
    assert ui.trainingStatusLabel.text.startswith(f"Improved {model.name}; AutoSeg Predict")
    assert app.settings[KEYS["last_model"]] == str(model)
    assert ui.improveModelButton.enabled

    predict.enter()  # the user goes to AutoSeg Predict: it shows the improved model
    assert predict.ui.modelPathLineEdit.currentPath == str(model)
    listed = [text for text, _ in predict.ui.modelListComboBox._items]
    assert f"{dataset} / {model.name} (kept version 1): AutoSeg, folds all" in listed
    predict.ui.modelPathLineEdit.currentPath = str(model / "versions" / "1")
    predict.exit()
    predict.enter()  # nothing changed elsewhere: the user's choice stays
    assert predict.ui.modelPathLineEdit.currentPath == str(model / "versions" / "1")


def test_a_cancelled_improvement_switches_nothing(app, scene, tmp_path: Path) -> None:
    train = _train_widget_with_a_case(app, scene, tmp_path)
    improve_panel = sys.modules["AutoSegTrainLib.improve_panel"]
    app.monkeypatch.setattr(improve_panel, "ensure_engine_dependencies", app._install_check)
    dataset = train._dataset.folder.name
    make_model(tmp_path / "results" / dataset, folds=("0",), channels=("CT",))
    train.ui.foldsLineEdit.text = "0"
    train.updateButtons()
    click(train.ui.improveModelButton)
    click(train.ui.cancelTrainingButton)
    StubRun.latest.cancelled = True
    tick(train)
    tick(train)
    assert train._run is None
    assert train.ui.comparisonLabel.text == ""
    assert KEYS["last_model"] not in app.settings
