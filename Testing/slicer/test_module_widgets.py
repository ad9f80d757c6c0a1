"""Smoke tests that execute the Train and Predict module widgets without the Slicer application.

Why: the module files are only wiring, but wiring breaks silently (a misspelt widget name, a
signal that never fires, a parameter name the .ui does not have) and nothing else runs them here.
Qt, CTK and Slicer's Python-only submodules are replaced by small, strict stand-ins: the widgets
are built from the real .ui files (every named widget, its initial properties, its
``SlicerParameterName``), know only the members their Qt class has, and emit signals when a
property changes, as Qt does. What exists is decided by the reference lists of Slicer 5.10 and
5.12 (Testing/slicer_api): ``slicer.util``, ``qt``, ``ctk``, ``slicer.i18n`` and the scripted
module bases offer only names both releases have, and calls are checked against their signatures.
MRML, the logic libraries and the files on disk are real; only the
engine's child processes (training, device probe, installs) are replaced. The stand-ins live in
``fake_qt.py`` and ``fake_slicer.py``.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import time
import types
import typing
from pathlib import Path

import pytest
import slicer
from Testing.slicer.fake_qt import (
    TESTS_FOLDER,
    FakePixmap,
    FakeQObject,
    FakeTableItem,
    ctk_module,
    load_ui,
    qt_module,
    qt_standin,
)
from Testing.slicer.fake_slicer import (
    FakeSlicer,
    parameter_wrapper_module,
    scripted_module,
)
from Testing.slicer.synthetic_scenario import add_synthetic_case
from Testing.slicer_api.standins import common_slicer_module, sample_data_module

from autoseg.errors import AutoSegError
from AutoSegCoreLib.preferences import KEYS
from AutoSegPredictLib.model_catalog import describe_model
from AutoSegPredictLib.predict_logic import PredictionUpdate
from AutoSegTrainLib.training_runs import RunSnapshot, StepSnapshot


@pytest.fixture
def app(scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Fake qt, ctk and Slicer submodules around the real MRML scene; unexpected errors fail."""
    fake = FakeSlicer(monkeypatch, tmp_path)
    store = qt_standin(
        "QSettings",
        value=lambda key, default=None: fake.settings.get(key, default),
        setValue=fake.settings.__setitem__,
    )
    file_dialog = qt_standin(
        "QFileDialog",
        getOpenFileName=lambda *args: fake.open_file,
        getSaveFileName=lambda *args: fake.save_file,
    )
    qt = qt_module(
        QTimer=lambda: FakeQObject("QTimer"),
        QSettings=lambda: store,
        QTableWidgetItem=FakeTableItem,
        QPixmap=FakePixmap,
        QFileDialog=file_dialog,
    )
    i18n = {"tr": lambda text: text, "translate": lambda context, text: text}
    fakes = {
        "qt": qt,
        "ctk": ctk_module(),
        "slicer.i18n": common_slicer_module("slicer.i18n", i18n),
        "slicer.parameterNodeWrapper": parameter_wrapper_module({}),
        "slicer.ScriptedLoadableModule": scripted_module(fake.module_files),
    }
    for name, module in fakes.items():
        monkeypatch.setitem(sys.modules, name, module)
    util = {
        "loadUI": load_ui,
        "childWidgetVariables": lambda top: types.SimpleNamespace(
            **{w._name: w for w in top._children}
        ),
        "tryWithErrorDisplay": fake.try_with_error_display,
        "confirmOkCancelDisplay": lambda text, *a, **k: fake.dialogs.append(("ok?", text)) or True,
        "errorDisplay": lambda text, *a, **k: fake.dialogs.append(("error", text)),
        "warningDisplay": lambda text, *a, **k: fake.dialogs.append(("warning", text)),
        "setSliceViewerLayers": lambda **layers: fake.layers.append(layers),
    }
    # Only what Slicer 5.10 and 5.12 both have; the rest of slicer-core's (5.13) util is hidden.
    strict_util = common_slicer_module("slicer.util", util, fallback=slicer.util)
    monkeypatch.setattr(slicer, "util", strict_util)
    application = FakeQObject("qSlicerApplication")
    application.cachePath = str(tmp_path / "cache")
    monkeypatch.setattr(slicer, "app", application, raising=False)
    combo = functools.partial(FakeQObject, "qMRMLNodeComboBox")
    monkeypatch.setattr(slicer, "qMRMLNodeComboBox", combo, raising=False)
    yield fake
    for widget in fake.widgets:
        widget.cleanup()
    assert not fake.errors, f"the module showed unexpected errors: {fake.errors}"


def click(button: FakeQObject) -> None:
    """A user click: only an enabled button can be clicked."""
    assert button.enabled, f"{button._name} is disabled"
    button._emit("clicked(bool)", False)


def tick(widget: typing.Any) -> None:
    """One timeout of the module's poll timer."""
    widget._timer._emit("timeout()")


def cells(table: FakeQObject) -> list[list[str]]:
    rows = range(table._rows)
    return [[table.item(r, c).text() for c in range(table._columns)] for r in rows]


class StubRun:
    """Stands in for TrainingRun (which starts engine processes): running, then ended."""

    def __init__(self, steps: list, *, python: str, env_overrides: dict, gpus: tuple) -> None:
        self.steps, self.python, self.env, self.gpus = list(steps), python, env_overrides, gpus
        self.ticks, self.cancels, self.failed_message = 0, [], None
        StubRun.latest = self

    @property
    def is_finished(self) -> bool:
        return self.ticks >= 2

    def tick(self) -> RunSnapshot:
        self.ticks += 1
        state = "running" if self.ticks == 1 else "cancelled"
        steps = [StepSnapshot(s.key, s.label, "waiting") for s in self.steps]
        steps[0] = StepSnapshot(self.steps[0].key, self.steps[0].label, state)
        return RunSnapshot(tuple(steps), f"tick {self.ticks}", self.is_finished)

    def cancel(self, timeout: float = 30.0, *, block: bool = False) -> None:
        self.cancels.append(block)

    def output_lines(self, key: str) -> list[str]:
        assert key in [s.key for s in self.steps], key
        return [f"{key}: no problems"]

    def take_log(self) -> list[str]:
        return [f"[{self.steps[0].label}] tick {self.ticks}"]


def _train_widget_with_a_case(app: FakeSlicer, scene: typing.Any, tmp_path: Path) -> typing.Any:
    """A dataset created and a case added through the GUI, checking each step."""
    module = app.load("AutoSegTrain")
    assert module.AutoSegTrain(types.SimpleNamespace()).parent.title == "AutoSeg Train"
    app.monkeypatch.setattr(app.panel("AutoSegTrain"), "TrainingRun", StubRun)
    widget = app.open(module.AutoSegTrainWidget)
    ui, raw = widget.ui, tmp_path / "raw"
    assert ui.rawRootPathLineEdit.currentPath == str(raw)
    assert ui.datasetInfoLabel.text == f"No dataset in {raw}: create one."
    assert not ui.startTrainingButton.enabled
    assert not ui.addCaseButton.enabled
    ui.newDatasetIdSpinBox.value = 42
    ui.newDatasetNameLineEdit.text = " Liver "
    click(ui.createDatasetButton)
    (folder,) = raw.iterdir()
    assert ui.datasetComboBox._items == [(folder.name, str(folder))]
    assert ui.datasetInfoLabel.text == "0 cases. Channels: CT. Labels: -."
    assert ui.startTrainingButton.enabled
    assert not ui.addCaseButton.enabled
    assert cells(ui.stepsTableWidget)[0][:2] == ["3d_fullres fold 0", "not started"]
    ((label, selector),) = ui.channelVolumesWidget.layout()._rows
    assert label == "CT volume:"

    volume, segmentation = add_synthetic_case(scene, 0)
    selector.setCurrentNode(volume)
    ui.segmentationSelector.setCurrentNode(segmentation)
    assert widget._parameterNode.segmentation is segmentation  # the GUI reaches the node
    click(ui.addCaseButton)
    assert app.dialogs == [("ok?", "Add these labels to the dataset?\norgan\nlesion")]
    ((case, channels, size, spacing, present),) = cells(ui.caseTableWidget)
    assert (channels, present) == ("1", "organ, lesion")
    assert size == "20 x 24 x 16"
    assert spacing == "0.9 x 0.8 x 1.6"
    assert (folder / "imagesTr" / f"{case}_0000.nii.gz").is_file()
    assert (folder / "labelsTr" / f"{case}.nii.gz").is_file()
    assert ui.trainingStatusLabel.text == f"Added case {case}."
    assert ui.datasetInfoLabel.text == "1 cases. Channels: CT. Labels: organ, lesion."

    return widget


def test_train_widget_creates_a_dataset_adds_a_case_and_runs(app, scene, tmp_path) -> None:
    widget = _train_widget_with_a_case(app, scene, tmp_path)
    ui, raw = widget.ui, tmp_path / "raw"
    ui.foldsLineEdit.text = "0"
    ui.epochsSpinBox.value = 3
    tick(widget)  # the device probe answered
    assert [item[1] for item in ui.trainDeviceComboBox._items] == ["auto", "cuda", "cpu"]
    ui.trainDeviceComboBox.setCurrentIndex(2)
    click(ui.startTrainingButton)
    run = StubRun.latest
    assert app.install_checks == [("AutoSegTrain", None)]
    assert run.python == sys.executable
    assert run.gpus == ()
    assert run.env["AUTOSEG_RAW"] == str(raw)
    assert [s.fold for s in run.steps if s.fold] == [("3d_fullres", 0)]
    assert "cpu" in run.steps[-2].args
    assert "3" in run.steps[-2].args
    assert not ui.startTrainingButton.enabled
    assert ui.cancelTrainingButton.enabled
    tick(widget)
    table = cells(ui.stepsTableWidget)
    assert len(table) == len(run.steps)
    assert table[0][:2] == [run.steps[0].label, "running"]
    assert table[1][1] == "waiting"
    assert ui.trainingStatusLabel.text == "tick 1"
    click(ui.cancelTrainingButton)
    assert run.cancels == [False]
    tick(widget)
    assert widget._run is None
    assert ui.startTrainingButton.enabled
    assert cells(ui.stepsTableWidget)[0][0] == "3d_fullres fold 0"  # the folders' view again

    click(ui.verifyButton)
    tick(widget)
    tick(widget)
    assert StubRun.latest.steps[0].key == "verify"
    assert ui.trainingStatusLabel.text == "verify: no problems"
    ui.rawRootPathLineEdit.currentPath = "relative"
    assert "must be an absolute folder path" in ui.datasetInfoLabel.text
    ui.rawRootPathLineEdit.currentPath = str(tmp_path / "other")
    assert app.settings[KEYS["raw_folder"]] == str(tmp_path / "other")
    assert ui.datasetComboBox.count == 0
    assert not ui.startTrainingButton.enabled


def test_train_case_list_loads_saves_and_removes_cases(app, scene, tmp_path) -> None:
    widget = _train_widget_with_a_case(app, scene, tmp_path)
    ui = widget.ui
    dataset = widget._dataset.folder
    ((case, *_),) = cells(ui.caseTableWidget)
    assert not ui.saveCaseButton.enabled  # nothing loaded yet
    click(ui.loadCaseButton)
    assert isinstance(app.pop_error(), AutoSegError)  # no row selected: one clear message
    ui.caseTableWidget.setCurrentCell(0, 0)
    click(ui.loadCaseButton)
    (volume,) = [n for n in scene.GetNodesByName(case) if n.IsA("vtkMRMLScalarVolumeNode")]
    assert app.layers[-1] == {"background": volume, "fit": True}
    segmentation = scene.GetFirstNodeByName(f"{case} segmentation")
    segments = segmentation.GetSegmentation()
    segments.RemoveSegment(segments.GetSegmentIdBySegmentName("lesion"))
    click(ui.saveCaseButton)
    assert ui.trainingStatusLabel.text == f"Saved case {case}."
    assert cells(ui.caseTableWidget)[0][4] == "organ"
    assert (dataset / "removed" / "labelsTr" / f"{case}.nii.gz").is_file()
    ui.caseTableWidget.setCurrentCell(0, 0)
    click(ui.removeCaseButton)
    assert app.dialogs[-1][0] == "ok?"
    assert f"Remove case {case} from the dataset?" in app.dialogs[-1][1]
    assert cells(ui.caseTableWidget) == []
    assert not ui.loadCaseButton.enabled
    assert not ui.saveCaseButton.enabled  # the loaded case is gone
    assert (dataset / "removed" / "imagesTr" / f"{case}_0000.nii.gz").is_file()
    assert ui.datasetInfoLabel.text.startswith("0 cases.")


def test_train_export_log_and_gpu_memory_target(app, scene, tmp_path) -> None:
    widget = _train_widget_with_a_case(app, scene, tmp_path)
    ui = widget.ui
    tick(widget)  # the device probe answered: a GPU whose memory it did not say
    assert ui.gpuAdviceLabel.text == "GPU memory unknown; plans are made for 8 GB."
    ui.gpuMemoryTargetSpinBox.value = 5.5
    assert widget._parameterNode.gpuMemoryTarget == 5.5
    assert ui.gpuAdviceLabel.text == "GPU memory unknown; plans are made for 5.5 GB."
    assert [item[1] for item in ui.exportFormatComboBox._items] == ["autoseg", "nnunet"]
    ui.exportFormatComboBox.setCurrentIndex(1)
    click(ui.exportModelButton)  # the file dialog was cancelled
    assert widget._run is None
    app.save_file = str(tmp_path / "liver.zip")
    click(ui.exportModelButton)
    (step,) = StubRun.latest.steps
    assert step.key == "export"
    assert step.args[:7] == (
        "export_model", "-d", widget._dataset.folder.name, "-o", app.save_file, "--format", "nnunet"
    )  # fmt: skip
    tick(widget)
    tick(widget)
    label = step.label
    assert ui.logTextEdit.plainText == f"[{label}] tick 1\n[{label}] tick 2"
    click(ui.startTrainingButton)
    plan = StubRun.latest.steps[0]
    assert plan.args[plan.args.index("--gpu-memory-target") + 1] == "5.5"


def test_the_demo_volume_is_offered_in_sample_data(app, scene, tmp_path) -> None:
    module = app.load("AutoSegTrain")
    registered = []
    app.monkeypatch.setitem(
        sys.modules, "SampleData", sample_data_module(lambda **kw: registered.append(kw))
    )
    module.AutoSegTrain(types.SimpleNamespace())
    assert registered == []  # only once Slicer has started
    slicer.app._emit("startupCompleted()")
    (source,) = registered
    assert (source["category"], source["sampleName"]) == ("AutoSeg", "AutoSeg synthetic CT")
    assert Path(source["thumbnailFileName"]).is_file()
    loaded = source["customDownloader"](None)
    assert loaded.volumes[0].GetScene() is scene
    segments = loaded.segmentation.GetSegmentation()
    assert [segments.GetNthSegment(i).GetName() for i in range(2)] == ["organ", "lesion"]
    assert (tmp_path / "cache" / "AutoSeg" / "Dataset990_AutoSegDemo" / "dataset.json").is_file()


def _predict_test_helpers() -> types.ModuleType:
    """test_predict_logic's tiny model folder builder (test files are not importable by name)."""
    spec = importlib.util.spec_from_file_location(
        "_predict_helpers", TESTS_FOLDER / "test_predict_logic.py"
    )
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    return helpers


class StubJob:
    """Stands in for PredictionJob (a child process): one progress update, then a result."""

    command = ("PythonSlicer", "-m", "autoseg", "predict")

    def __init__(self, result: typing.Any) -> None:
        self.result, self.polls, self.cancelled, self.elapsed_seconds = result, 0, False, 1.25

    @property
    def is_running(self) -> bool:
        return self.polls < 2

    def poll(self) -> list[PredictionUpdate]:
        self.polls += 1
        return (
            [PredictionUpdate("progress", "cases: 0/1", "cases", 0, 1)] if self.polls == 1 else []
        )

    def finish(self) -> typing.Any:
        return self.result

    def cancel(self) -> None:
        self.cancelled = True


def _predict_widget_ready(app: FakeSlicer, scene: typing.Any, tmp_path: Path) -> tuple:
    """Model, first and second channel chosen through the GUI, checking each step."""
    module = app.load("AutoSegPredict")
    widget = app.open(module.AutoSegPredictWidget)
    ui = widget.ui
    assert ui.modelInfoLabel.text == "Choose a model folder."
    assert ui.modelPathLineEdit.currentPath == "."
    assert not ui.segmentButton.enabled
    empty = tmp_path / "empty"
    empty.mkdir()
    ui.modelPathLineEdit.currentPath = str(empty)
    assert str(empty) in ui.modelInfoLabel.text
    assert widget._model is None
    assert widget._parameterNode.modelPath == empty  # the GUI reaches the node
    ui.modelPathLineEdit.currentPath = "."
    assert ui.modelInfoLabel.text == "Choose a model folder."

    model = _predict_test_helpers().make_model(tmp_path / "results", channels=2)
    ui.modelPathLineEdit.currentPath = str(model)
    assert ui.modelInfoLabel.text == describe_model(model).summary()
    assert app.settings[KEYS["last_model"]] == str(model)
    assert ui.inputVolumeLabel.text == "CT0:"
    ((label, second),) = ui.extraChannelsWidget.layout()._rows
    assert label == "CT1:"
    assert not ui.segmentButton.enabled
    volume, segmentation = add_synthetic_case(scene, 0)
    ui.inputVolumeSelector.setCurrentNode(volume)
    assert widget._parameterNode.inputVolume is volume
    assert not ui.segmentButton.enabled
    second.setCurrentNode(volume)
    assert ui.segmentButton.enabled

    return widget, model, volume, segmentation


def test_predict_widget_describes_models_and_segments(app, scene, tmp_path) -> None:
    widget, model, volume, segmentation = _predict_widget_ready(app, scene, tmp_path)
    ui = widget.ui
    tick(widget)  # the device probe answered
    assert ui.deviceComboBox.itemData(1) == "cuda:0"
    assert ui.deviceComboBox.currentIndex == 0
    ui.deviceComboBox.setCurrentIndex(2)
    assert app.settings[KEYS["device"]] == "cpu"
    calls = []
    job = StubJob(segmentation)

    def start(volumes: list, model_path: Path, **options: object) -> StubJob:
        calls.append((volumes, model_path, options))
        return job

    app.monkeypatch.setattr(widget.logic, "start_segmentation", start)
    click(ui.segmentButton)
    assert app.install_checks == [("AutoSegPredict", None)]
    ((volumes, model_path, options),) = calls
    assert volumes == [volume, volume]
    assert model_path == model
    assert options["device"] == "cpu"
    assert options["tta"]
    assert not options["fast"]
    assert options["env_overrides"]["AUTOSEG_RESULTS"] == str(tmp_path / "results")
    assert ui.statusLabel.text == "Starting the engine..."
    assert ui.cancelButton.enabled
    assert (ui.progressBar.minimum, ui.progressBar.maximum) == (0, 0)
    tick(widget)
    assert (ui.progressBar.maximum, ui.progressBar.value) == (1, 0)
    assert ui.statusLabel.text == "cases: 0/1"
    assert not ui.segmentButton.enabled
    tick(widget)
    assert ui.statusLabel.text == f"Done: {segmentation.GetName()} (1.2 s)."
    assert app.layers == [{"background": volume}]
    assert ui.segmentButton.enabled
    assert (ui.progressBar.maximum, ui.progressBar.value) == (100, 0)


def test_cancel_hands_the_job_to_a_thread_and_stops_polling_it(app, scene, tmp_path) -> None:
    widget, _, _, segmentation = _predict_widget_ready(app, scene, tmp_path)
    job = StubJob(segmentation)
    app.monkeypatch.setattr(widget.logic, "start_segmentation", lambda *a, **k: job)
    click(widget.ui.segmentButton)
    click(widget.ui.cancelButton)
    deadline = time.monotonic() + 10
    while not job.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.cancelled
    tick(widget)
    assert job.polls == 0  # the timer no longer touches a job being cancelled
    assert widget.ui.statusLabel.text == "Cancelled."
    assert widget.ui.segmentButton.enabled
    assert not widget.ui.cancelButton.enabled


def test_predict_widget_imports_a_model_zip(app, tmp_path) -> None:
    from autoseg.model_sharing import export_model

    module = app.load("AutoSegPredict")
    widget = app.open(module.AutoSegPredictWidget)
    click(widget.ui.importModelButton)  # the dialog was cancelled: nothing happens
    assert widget.ui.modelPathLineEdit.currentPath == "."
    model = _predict_test_helpers().make_model(tmp_path / "shared")
    app.open_file = str(export_model(model.parent, tmp_path / "model.zip"))
    click(widget.ui.importModelButton)
    imported = tmp_path / "results" / model.parent.name
    assert widget.ui.modelPathLineEdit.currentPath == str(imported)
    assert widget.ui.modelInfoLabel.text == describe_model(imported).summary()
    click(widget.ui.importModelButton)  # a second import would overwrite: refused and shown
    assert "already" in str(app.pop_error())


def test_scene_close_resets_both_widgets(app, scene, tmp_path) -> None:
    train = app.open(app.load("AutoSegTrain").AutoSegTrainWidget)
    predict = app.open(app.load("AutoSegPredict").AutoSegPredictWidget)
    model = _predict_test_helpers().make_model(tmp_path / "results")
    volume, segmentation = add_synthetic_case(scene, 0)
    predict.ui.modelPathLineEdit.currentPath = str(model)
    predict.ui.inputVolumeSelector.setCurrentNode(volume)
    train.ui.segmentationSelector.setCurrentNode(segmentation)
    assert predict.ui.segmentButton.enabled
    train.ui.foldsLineEdit.text = "0"
    predict.exit()  # another module was chosen: the GUI no longer writes the node
    predict.ui.ttaCheckBox.checked = False
    assert predict._parameterNode.useTta
    predict.enter()
    assert predict.ui.ttaCheckBox.checked
    nodes = (train._parameterNode, predict._parameterNode)
    scene.Clear(0)  # File / Close scene: StartCloseEvent, EndCloseEvent
    for widget in (train, predict):
        tick(widget)
    assert nodes[0] is not train._parameterNode
    assert nodes[1] is not predict._parameterNode
    assert predict._parameterNode.inputVolume is None
    assert train.ui.foldsLineEdit.text == "0 1 2 3 4"
    assert predict.ui.modelPathLineEdit.currentPath == str(model)  # the last model comes back
    assert not predict.ui.segmentButton.enabled
    assert train._parameterNode.segmentation is None
    assert train._parameterNode.folds == "0 1 2 3 4"


def test_closing_the_scene_cancels_a_running_prediction(app, scene, tmp_path) -> None:
    widget, _, _, segmentation = _predict_widget_ready(app, scene, tmp_path)
    job = StubJob(segmentation)
    app.monkeypatch.setattr(widget.logic, "start_segmentation", lambda *a, **k: job)
    click(widget.ui.segmentButton)
    scene.Clear(0)  # File / Close scene while the engine runs
    deadline = time.monotonic() + 10
    while not job.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.cancelled
    assert widget._job is None
    tick(widget)
    assert job.polls == 0
    assert widget.ui.statusLabel.text == "Cancelled: the scene was closed."
    assert not widget.ui.cancelButton.enabled


def test_the_predict_panel_preselects_a_volume_the_selector_lists(app, scene) -> None:
    """A label map comes first in the scene; the panel must not preselect it."""
    scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    volume, _ = add_synthetic_case(scene, 0)
    widget = app.open(app.load("AutoSegPredict").AutoSegPredictWidget)
    assert widget._parameterNode.inputVolume is volume
    assert widget.ui.inputVolumeSelector.currentNode() is volume


def test_the_stand_ins_refuse_what_slicer_5_10_or_5_12_lacks(app) -> None:
    """The fakes know the real API: what the real modules lack fails here as it would in Slicer."""
    qt = sys.modules["qt"]
    with pytest.raises(AttributeError, match="has no 'executePythonModule'"):
        slicer.util.executePythonModule("light_the_torch", [])  # only from Slicer 5.12
    with pytest.raises(AttributeError, match="has no 'QMagicWidget'"):
        qt.QMagicWidget()
    with pytest.raises(AttributeError, match="no attribute 'enabled' in Slicer"):
        qt.QTimer().enabled  # a QTimer is no widget  # noqa: B018
    with pytest.raises(AttributeError, match="stand-in does not implement 'isActive'"):
        qt.QTimer().isActive()
    with pytest.raises(AssertionError, match="has no signal fired"):
        qt.QTimer().connect("fired()", print)
    with pytest.raises(TypeError, match="would reject"):
        slicer.util.errorDisplay()  # text is required
    assert slicer.util.arrayFromVolume is not None  # real slicer-core functions both releases have
