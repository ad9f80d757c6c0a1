"""The AutoSegPredict module's panel: parameter node, Slicer logic and widget.

Only the Slicer wiring lives here; the work happens in the Qt-free modules of this package that
are tested headless with real MRML, and the prediction itself runs in a child process
(``PythonSlicer -m autoseg predict``), so torch never loads into Slicer and the user interface
stays responsive. The module file (AutoSegPredict.py) imports these classes once it has checked
that this Slicer is supported.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from pathlib import Path

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from AutoSegCoreLib.channel_selectors import ChannelSelectors
from AutoSegCoreLib.dependency_install import ensure_engine_dependencies
from AutoSegCoreLib.device_detection import (
    DeviceInfo,
    detect_devices_in_background,
    device_choices,
)
from AutoSegCoreLib.preferences import Preferences
from AutoSegCoreLib.process_runner import default_python
from AutoSegPredictLib.backend_panel import BackendOption
from AutoSegPredictLib.correction_panel import CorrectionPanel
from AutoSegPredictLib.model_catalog import (
    ModelDescription,
    describe_model,
    describe_zip,
    found_models,
    import_model_zip,
)
from AutoSegPredictLib.predict_logic import INPUT_REMOVED, default_input_volume
from AutoSegPredictLib.predict_logic import AutoSegPredictLogic as _PredictionLogic

POLL_INTERVAL_MS = 200
LOG_LINES = 2000  # the log box keeps the last lines of the engine's output
# nnU-Net users keep their folders in these variables; their models and datasets are found there
# too (read here, on the Slicer side: the engine itself reads the environment only in its CLI).
NNUNET_RESULTS, NNUNET_RAW = "nnUNet_results", "nnUNet_raw"


@parameterNodeWrapper
class AutoSegPredictParameterNode:
    """What the module remembers in the scene (user preferences live in the application settings)."""

    inputVolume: vtkMRMLScalarVolumeNode
    modelPath: Path
    outputSegmentation: vtkMRMLSegmentationNode
    useTta: bool = True
    fastMode: bool = False


class AutoSegPredictLogic(ScriptedLoadableModuleLogic, _PredictionLogic):
    """Slicer's module logic: the parameter node plus the headless-tested prediction logic."""

    def __init__(self, python_executable: str | None = None) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        _PredictionLogic.__init__(self, python_executable or default_python())

    def getParameterNode(self) -> AutoSegPredictParameterNode:
        return AutoSegPredictParameterNode(super().getParameterNode())


class AutoSegPredictWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: pick a model and a volume, press Segment, watch progress, cancel if needed."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: AutoSegPredictLogic | None = None
        self._parameterNode: AutoSegPredictParameterNode | None = None
        self._parameterNodeGuiTag = None
        self._model: ModelDescription | None = None
        self._job = None
        self._jobVolume = None
        self._jobVolumes: list = []
        self._devices: concurrent.futures.Future[DeviceInfo] | None = None
        self._timer = qt.QTimer()

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AutoSegPredict.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self._extraChannels = ChannelSelectors(
            self.ui.extraChannelsWidget.layout(), self.updateButtons, _("{channel}:")
        )
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.preferences = Preferences.load(qt.QSettings())
        customPython = self.preferences.python_executable
        self.logic = AutoSegPredictLogic(str(customPython) if customPython else None)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.onModelPathChanged)
        self.ui.importModelButton.connect("clicked(bool)", self.onImportModel)
        self.ui.segmentButton.connect("clicked(bool)", self.onSegment)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancel)
        self.ui.deviceComboBox.connect("currentIndexChanged(int)", self.onDeviceChanged)
        self._backend = BackendOption(self.ui.backendComboBox, self._setPreferences)
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.ui.modelListComboBox.connect("currentIndexChanged(int)", self.onModelListChosen)
        self._corrections = CorrectionPanel(
            self.ui,
            rawRoots=lambda: [self.preferences.raw_folder, _environmentFolder(NNUNET_RAW)],
            defaultFolder=lambda: self.preferences.raw_folder,
            refreshButtons=self.updateButtons,
        )
        self.ui.logTextEdit.setMaximumBlockCount(LOG_LINES)
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)

        self._fillDeviceChoices(None)
        self._backend.show(self.preferences)
        self._devices = detect_devices_in_background(self.logic.python_executable)
        self._timer.start()
        self._fillModelList()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._job is not None and self._job.is_running:
            self._job.cancel()
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        stored = Preferences.load(qt.QSettings())  # the Train panel may have changed them
        chosenElsewhere = stored.last_model != self.preferences.last_model
        self.preferences = stored
        self._fillModelList()
        self.initializeParameterNode()
        if chosenElsewhere and stored.last_model:  # e.g. Improve model: show the improved model
            self._parameterNode.modelPath = Path(stored.last_model)

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        if self._job is not None:  # its input volume is about to go: nothing to import into
            self._cancelJob(_("Cancelled: the scene was closed."))
        self._corrections.end()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = default_input_volume(slicer.mrmlScene)  # as the selector lists them
            if firstVolume:
                self._parameterNode.inputVolume = firstVolume
        if _noModel(str(self._parameterNode.modelPath or "")) and self.preferences.last_model:
            self._parameterNode.modelPath = Path(self.preferences.last_model)

    def setParameterNode(self, inputParameterNode: AutoSegPredictParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
        self.onModelPathChanged(self.ui.modelPathLineEdit.currentPath)

    # Model -------------------------------------------------------------------------------------

    def onModelPathChanged(self, path: str) -> None:
        self._model = None
        self.ui.modelInfoLabel.text = _("Choose a model folder.")
        if not _noModel(path):
            try:
                self._model = describe_model(Path(path))
            except (ValueError, OSError) as error:
                self.ui.modelInfoLabel.text = str(error)
        if self._model is not None:
            self.ui.modelInfoLabel.text = self._model.summary()
            if self._model.path != self.preferences.last_model:
                self.preferences = Preferences.update(qt.QSettings(), last_model=self._model.path)
        self._showChannels()
        self.updateButtons()

    def onImportModel(self) -> None:
        zipPath = qt.QFileDialog.getOpenFileName(
            self.parent, _("Import model zip"), "", _("Model zip (*.zip)")
        )
        if not zipPath:
            return
        results = self.preferences.results_folder
        with slicer.util.tryWithErrorDisplay(_("Could not import the model."), waitCursor=True):
            shown = describe_zip(Path(zipPath), results)
            question = _("Import this model into {folder}?").format(folder=results)
            if not slicer.util.confirmOkCancelDisplay(f"{question}\n\n{shown.summary()}"):
                return
            folder = import_model_zip(Path(zipPath), results)
            self._fillModelList()
            self.ui.modelPathLineEdit.currentPath = str(folder)

    def _resultsRoots(self) -> list[Path | None]:
        return [self.preferences.results_folder, _environmentFolder(NNUNET_RESULTS)]

    def _fillModelList(self) -> None:
        """The models found in the results folders; choosing one fills the path field."""
        combo = self.ui.modelListComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        combo.addItem(_("Choose a model found in the results folders..."), "")
        for label, folder in found_models(self._resultsRoots()):
            combo.addItem(label, str(folder))
        combo.setCurrentIndex(0)
        combo.blockSignals(wasBlocked)

    def onModelListChosen(self, index: int) -> None:
        folder = self.ui.modelListComboBox.itemData(index)
        if folder:
            self.ui.modelPathLineEdit.currentPath = folder

    def _showChannels(self) -> None:
        """The input selector is the model's first channel; further channels get their own."""
        channels = self._model.channel_names if self._model else ()
        self._extraChannels.set_channels(channels[1:])
        first = channels[0] if channels else _("Volume")
        self.ui.inputVolumeLabel.text = _("{channel}:").format(channel=first)

    def _inputVolumes(self) -> list:
        volumes = [self.ui.inputVolumeSelector.currentNode()]
        volumes += self._extraChannels.volumes()
        return volumes

    # Devices -----------------------------------------------------------------------------------

    def _fillDeviceChoices(self, info: DeviceInfo | None) -> None:
        combo = self.ui.deviceComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for label, device in device_choices(info):
            combo.addItem(label, device)
        combo.setCurrentIndex(max(combo.findData(self.preferences.device), 0))
        combo.blockSignals(wasBlocked)
        if info is not None:
            combo.toolTip = info.summary()

    def onDeviceChanged(self, index: int) -> None:
        device = self.ui.deviceComboBox.itemData(index) or "auto"
        self.preferences = Preferences.update(qt.QSettings(), device=device)

    def _setPreferences(self, preferences: Preferences) -> None:
        self.preferences = preferences

    # Segment -----------------------------------------------------------------------------------

    def updateButtons(self, *_args) -> None:
        running = self._job is not None and self._job.is_running
        ready = self._model is not None and all(self._inputVolumes())
        self.ui.segmentButton.enabled = ready and not running
        self.ui.cancelButton.enabled = running
        self.ui.correctButton.enabled = self._corrections.available and not running
        if not ready and not running:
            self.ui.segmentButton.toolTip = _("Choose a model and a volume for every channel.")
        else:
            self.ui.segmentButton.toolTip = _("Segment the volume in a background process.")

    def onSegment(self) -> None:
        device = self.ui.deviceComboBox.currentData or "auto"
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation.")):
            python = self.preferences.python_executable
            if not ensure_engine_dependencies("AutoSegPredict", python):
                return
            if not self._backend.runtimeReady("AutoSegPredict", python):
                return
            self._corrections.end()
            self._jobVolume = self.ui.inputVolumeSelector.currentNode()
            self._jobVolumes = self._inputVolumes()
            self._job = self.logic.start_segmentation(
                self._jobVolumes,
                self._model.path,
                device=device,
                backend=self._backend.chosen,
                tta=self.ui.ttaCheckBox.checked,
                fast=self.ui.fastCheckBox.checked,
                env_overrides=self.preferences.engine_env(),
                into=self.ui.outputSegmentationSelector.currentNode(),
            )
            self.ui.logTextEdit.clear()
            self.ui.logTextEdit.appendPlainText(" ".join(self._job.command))
            self.ui.progressBar.setRange(0, 0)
            self.ui.statusLabel.text = _("Starting the engine...")
        self.updateButtons()

    def onCancel(self) -> None:
        self._cancelJob(_("Cancelled."))

    def _cancelJob(self, status: str) -> None:
        """Ends the engine's process tree on a helper thread (it may wait seconds for it)."""
        job, self._job = self._job, None  # no more polling: the thread owns the job now
        if job is not None:
            threading.Thread(target=job.cancel, daemon=True).start()
            self.ui.statusLabel.text = status
        self._resetProgress()

    def onPoll(self) -> None:
        if self._devices is not None and self._devices.done():
            self._fillDeviceChoices(self._devices.result())
            self._devices = None
        if self._job is None:
            return
        for update in self._job.poll():
            self._showProgress(update)
        if not self._job.is_running:
            self._finishJob()

    def _showProgress(self, update) -> None:
        if update.kind != "progress":
            self.ui.logTextEdit.appendPlainText(update.text)
        if update.total:
            self.ui.progressBar.setRange(0, update.total)
            self.ui.progressBar.setValue(update.done)
        self.ui.statusLabel.text = update.text

    def _finishJob(self) -> None:
        job, self._job = self._job, None
        self._resetProgress()
        if job.cancelled:  # by itself when its input volume left the scene
            self.ui.statusLabel.text = INPUT_REMOVED if job.input_removed else _("Cancelled.")
            return
        with slicer.util.tryWithErrorDisplay(_("Segmentation failed."), waitCursor=True):
            segmentation = job.finish()
            segmentation.CreateClosedSurfaceRepresentation()
            slicer.util.setSliceViewerLayers(background=self._jobVolume)
            self.ui.statusLabel.text = _("Done: {name} ({seconds:.1f} s).").format(
                name=segmentation.GetName(), seconds=job.elapsed_seconds
            )
            dataset = self._model.training_dataset if self._model else ""
            self._corrections.offer(segmentation, tuple(self._jobVolumes), dataset)

    def _resetProgress(self) -> None:
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.setValue(0)
        self.updateButtons()


def _environmentFolder(name: str) -> Path | None:
    """A folder named by an environment variable (e.g. nnUNet_results), None when unset."""
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def _noModel(path: str) -> bool:
    """An empty path field (a Path parameter's default shows as ".") names no model."""
    return path.strip() in ("", ".")
