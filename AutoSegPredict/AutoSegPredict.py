"""AutoSegPredict: segment the selected volume with a trained AutoSeg model in one click.

This file is only the Slicer wiring (module description, parameter node, widget, self-test). The
work happens in Qt-free classes in ``AutoSegPredictLib`` that are tested headless with real MRML,
and the prediction itself runs in a child process (``PythonSlicer -m autoseg predict``) so torch
never loads into Slicer and the user interface stays responsive.

Console use, without the GUI::

    from AutoSegPredict import AutoSegPredictLogic
    seg = AutoSegPredictLogic().segment(volumeNode, "/data/results/Dataset004_Hippocampus")
"""

from __future__ import annotations

import concurrent.futures
import sys
import tempfile
import threading
from pathlib import Path

import qt

# From a source checkout (Slicer's "Additional module paths"), the shared helpers and the engine sit
# in ../AutoSegCore; a built extension installs them on Slicer's Python path instead.
_SOURCE_CORE = Path(__file__).resolve().parent.parent / "AutoSegCore"
if (_SOURCE_CORE / "AutoSegCoreLib").is_dir() and str(_SOURCE_CORE) not in sys.path:
    sys.path.append(str(_SOURCE_CORE))

import slicer
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
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
from AutoSegCoreLib.synthetic_scenario import (
    SEGMENT_NAMES,
    segment_scenario_volume,
    train_scenario_model,
)
from AutoSegPredictLib.model_catalog import ModelDescription, describe_model, import_model_zip
from AutoSegPredictLib.predict_logic import AutoSegPredictLogic as _PredictionLogic

POLL_INTERVAL_MS = 200


class AutoSegPredict(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("AutoSeg Predict")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["AutoSeg team"]
        self.parent.helpText = _(
            "Segment a volume with a model trained by AutoSeg (the nnU-Net v2 method). Choose a "
            "dataset's results folder to use the configuration, fold ensemble and postprocessing "
            "that model selection recommended, or a single model folder. The prediction runs in a "
            "background process; the result is a segmentation with the dataset's label names."
        )
        self.parent.acknowledgementText = _(
            "AutoSeg implements the nnU-Net v2 method (Isensee et al., Nature Methods 2021)."
        )


@parameterNodeWrapper
class AutoSegPredictParameterNode:
    """What the module remembers in the scene (user preferences live in the application settings)."""

    inputVolume: vtkMRMLScalarVolumeNode
    modelPath: Path
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
        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)

        self._fillDeviceChoices(None)
        self._devices = detect_devices_in_background(self.logic.python_executable)
        self._timer.start()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._job is not None and self._job.is_running:
            self._job.cancel()
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
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
            self.parent, _("Import AutoSeg model"), "", _("Model zip (*.zip)")
        )
        if not zipPath:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not import the model."), waitCursor=True):
            folder = import_model_zip(Path(zipPath), self.preferences.results_folder)
            self.ui.modelPathLineEdit.currentPath = str(folder)

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

    # Segment -----------------------------------------------------------------------------------

    def updateButtons(self, *_args) -> None:
        running = self._job is not None and self._job.is_running
        ready = self._model is not None and all(self._inputVolumes())
        self.ui.segmentButton.enabled = ready and not running
        self.ui.cancelButton.enabled = running
        if not ready and not running:
            self.ui.segmentButton.toolTip = _("Choose a model and a volume for every channel.")
        else:
            self.ui.segmentButton.toolTip = _("Segment the volume in a background process.")

    def onSegment(self) -> None:
        device = self.ui.deviceComboBox.currentData or "auto"
        with slicer.util.tryWithErrorDisplay(_("Could not start the segmentation.")):
            if not ensure_engine_dependencies("AutoSegPredict", self.preferences.python_executable):
                return
            self._jobVolume = self.ui.inputVolumeSelector.currentNode()
            self._job = self.logic.start_segmentation(
                self._inputVolumes(),
                self._model.path,
                device=device,
                tta=self.ui.ttaCheckBox.checked,
                fast=self.ui.fastCheckBox.checked,
                env_overrides=self.preferences.engine_env(),
            )
            self.ui.progressBar.setRange(0, 0)
            self.ui.statusLabel.text = _("Starting the engine...")
        self.updateButtons()

    def onCancel(self) -> None:
        """Ends the engine's process tree on a helper thread (it may wait seconds for it)."""
        job, self._job = self._job, None  # no more polling: the thread owns the job now
        if job is not None:
            threading.Thread(target=job.cancel, daemon=True).start()
            self.ui.statusLabel.text = _("Cancelled.")
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
        if update.total:
            self.ui.progressBar.setRange(0, update.total)
            self.ui.progressBar.setValue(update.done)
        self.ui.statusLabel.text = update.text

    def _finishJob(self) -> None:
        job, self._job = self._job, None
        self._resetProgress()
        if job.cancelled:
            self.ui.statusLabel.text = _("Cancelled.")
            return
        with slicer.util.tryWithErrorDisplay(_("Segmentation failed."), waitCursor=True):
            segmentation = job.finish()
            segmentation.CreateClosedSurfaceRepresentation()
            slicer.util.setSliceViewerLayers(background=self._jobVolume)
            self.ui.statusLabel.text = _("Done: {name} ({seconds:.1f} s).").format(
                name=segmentation.GetName(), seconds=job.elapsed_seconds
            )

    def _resetProgress(self) -> None:
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.setValue(0)
        self.updateButtons()


class AutoSegPredictTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: trains a tiny model on synthetic cases, then segments a new volume."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_segment_synthetic_volume()

    def test_segment_synthetic_volume(self) -> None:
        self.delayDisplay("Training a tiny model on synthetic cases (under a minute)")
        with tempfile.TemporaryDirectory() as folder:
            model = train_scenario_model(slicer.mrmlScene, Path(folder), default_python())
            self.delayDisplay("Segmenting a fourth, oblique volume through the logic")
            volume, segmentation = segment_scenario_volume(
                slicer.mrmlScene, model, default_python()
            )
            segments = segmentation.GetSegmentation()
            self.assertEqual(segments.GetNumberOfSegments(), len(SEGMENT_NAMES))
            referenceRole = segmentation.GetReferenceImageGeometryReferenceRole()
            self.assertEqual(segmentation.GetNodeReference(referenceRole), volume)
        self.delayDisplay("Test passed")


def _noModel(path: str) -> bool:
    """An empty path field (a Path parameter's default shows as ".") names no model."""
    return path.strip() in ("", ".")
