"""The Predict panel's new wiring, run with the strict stand-ins of test_module_widgets: the model
list, a zip described before import, the result written into a chosen segmentation, the log box,
and "Correct and add as training case" adding the corrected result to the model's raw dataset."""

from __future__ import annotations

import sys
import typing
import zipfile
from pathlib import Path

import pytest
import SimpleITK as sitk
import slicer
from Testing.slicer.fake_qt import qt_standin
from Testing.slicer.model_fixtures import make_model
from Testing.slicer.synthetic_scenario import add_synthetic_case, export_scenario_cases
from Testing.slicer.test_module_widgets import StubJob, app, click, tick

from autoseg.model_sharing import export_model
from AutoSegPredictLib.predict_logic import PredictionUpdate

__all__ = ["app"]  # the fixture, used by name


class TalkingJob(StubJob):
    """A stand-in job that also prints a line, as the engine does."""

    def poll(self) -> list[PredictionUpdate]:
        return [*super().poll(), PredictionUpdate("text", f"engine line {self.polls}")]


@pytest.fixture
def no_nnunet_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("nnUNet_results", "nnUNet_raw"):
        monkeypatch.delenv(name, raising=False)


def test_models_are_listed_chosen_and_the_result_goes_into_a_chosen_node(
    app, scene, tmp_path: Path, no_nnunet_env
) -> None:
    info, _ = export_scenario_cases(scene, tmp_path / "raw")  # the model's raw dataset
    model = make_model(tmp_path / "results" / info.folder.name, folds=("0",), channels=("CT",))
    widget = app.open(app.load("AutoSegPredict").AutoSegPredictWidget)
    ui = widget.ui
    assert [text for text, _ in ui.modelListComboBox._items[1:]] == [
        info.folder.name,
        f"{info.folder.name} / {model.name}: AutoSeg, folds 0",
    ]
    ui.modelListComboBox.setCurrentIndex(2)
    assert ui.modelPathLineEdit.currentPath == str(model)
    assert widget._model.training_dataset == info.folder.name
    volume, mine = add_synthetic_case(scene, 3)
    ui.inputVolumeSelector.setCurrentNode(volume)
    ui.outputSegmentationSelector.setCurrentNode(mine)
    assert widget._parameterNode.outputSegmentation is mine
    options: dict = {}
    job = TalkingJob(mine)

    def start(volumes: list, model_path: Path, **given: object) -> TalkingJob:
        options.update(given)
        return job

    app.monkeypatch.setattr(widget.logic, "start_segmentation", start)
    assert not ui.correctButton.enabled
    click(ui.segmentButton)
    assert options["into"] is mine
    assert ui.logTextEdit.plainText == "PythonSlicer -m autoseg predict"
    tick(widget)
    tick(widget)
    assert ui.logTextEdit.plainText.splitlines()[1:] == ["engine line 1", "engine line 2"]

    selected: list[str] = []
    app.monkeypatch.setattr(slicer.util, "selectModule", selected.append, raising=False)
    click(ui.correctButton)  # opens the Segment Editor on the result
    assert selected == ["SegmentEditor"]
    assert ui.correctButton.text == "Add as training case"
    click(ui.correctButton)  # the corrected result becomes the dataset's fourth case
    assert ui.statusLabel.text.startswith("Added case ")
    assert ui.correctButton.text == "Correct and add as training case"
    assert not ui.correctButton.enabled
    labels = sorted((info.folder / "labelsTr").iterdir())
    assert len(labels) == 4
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(labels[-1]))).max() == 2


def test_an_unknown_dataset_is_asked_for(app, scene, tmp_path: Path, no_nnunet_env) -> None:
    info, _ = export_scenario_cases(scene, tmp_path / "elsewhere")
    model = make_model(tmp_path / "results" / info.folder.name, folds=("0",), channels=("CT",))
    widget = app.open(app.load("AutoSegPredict").AutoSegPredictWidget)
    widget.ui.modelPathLineEdit.currentPath = str(model)
    volume, segmentation = add_synthetic_case(scene, 3)
    widget.ui.inputVolumeSelector.setCurrentNode(volume)
    app.monkeypatch.setattr(
        widget.logic, "start_segmentation", lambda *a, **k: TalkingJob(segmentation)
    )
    click(widget.ui.segmentButton)
    tick(widget)
    tick(widget)
    asked: list[typing.Any] = []
    dialog = qt_standin(
        "QFileDialog",
        getOpenFileName=lambda *args: app.open_file,
        getExistingDirectory=lambda *args: asked.append(args) or str(info.folder),
    )
    sys.modules["qt"].provide(QFileDialog=dialog)
    app.monkeypatch.setattr(slicer.util, "selectModule", len, raising=False)
    click(widget.ui.correctButton)
    click(widget.ui.correctButton)
    assert len(asked) == 1
    assert len(list((info.folder / "labelsTr").iterdir())) == 4


def test_a_zip_is_shown_before_it_is_imported(app, tmp_path: Path, no_nnunet_env) -> None:
    model = make_model(tmp_path / "shared" / "Dataset004_Hippocampus", folds=("0",))
    app.open_file = str(export_model(model.parent, tmp_path / "model.zip"))
    widget = app.open(app.load("AutoSegPredict").AutoSegPredictWidget)
    click(widget.ui.importModelButton)
    ((kind, text),) = app.dialogs
    assert kind == "ok?"
    assert "Dataset004_Hippocampus" in text
    assert f"{model.name} (folds 0)" in text
    imported = tmp_path / "results" / "Dataset004_Hippocampus"
    assert widget.ui.modelPathLineEdit.currentPath == str(imported)
    assert any(data == str(imported) for _, data in widget.ui.modelListComboBox._items)
    unsafe = tmp_path / "unsafe.zip"
    with zipfile.ZipFile(unsafe, "w") as archive:
        archive.writestr("../evil.sh", b"echo")
    app.open_file = str(unsafe)
    click(widget.ui.importModelButton)
    assert "not a model zip" in str(app.pop_error())
