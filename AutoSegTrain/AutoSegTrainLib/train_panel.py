"""The AutoSegTrain module's panel: parameter node, Slicer logic and widget.

Only the Slicer wiring lives here; the work is in the Qt-free modules of this package (tested
headless with real MRML). The engine runs as child processes (``PythonSlicer -m autoseg ...``)
that the widget polls from a timer, so Slicer stays responsive and Cancel ends them. The module
file (AutoSegTrain.py) imports these classes once it has checked that this Slicer is supported.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer import vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from autoseg.errors import AutoSegError
from AutoSegCoreLib.case_export import NewLabelsNeedConfirmation, export_case
from AutoSegCoreLib.channel_selectors import ChannelSelectors
from AutoSegCoreLib.dataset_folder import DatasetInfo, create_dataset, list_datasets, open_dataset
from AutoSegCoreLib.dependency_install import ensure_engine_dependencies
from AutoSegCoreLib.device_detection import (
    DeviceInfo,
    detect_devices_in_background,
    device_choices,
)
from AutoSegCoreLib.preferences import Preferences
from AutoSegCoreLib.process_runner import default_python
from AutoSegTrainLib.case_list_panel import CaseListPanel
from AutoSegTrainLib.gpu_advice import gpu_memory_advice
from AutoSegTrainLib.improve_panel import ImprovePanel
from AutoSegTrainLib.model_export import EXPORT_FORMATS, default_zip_name, export_step
from AutoSegTrainLib.progress_table import COLUMNS, fold_status_rows, step_row
from AutoSegTrainLib.training_plan import VERIFY_KEY, request_from_choices, verify_step
from AutoSegTrainLib.training_runs import TrainingRequest, TrainingRun, plan_steps

POLL_INTERVAL_MS = 500


@parameterNodeWrapper
class AutoSegTrainParameterNode:
    """What the module remembers in the scene (data folders and device are user preferences)."""

    segmentation: vtkMRMLSegmentationNode
    use2d: bool = False
    use3dFullres: bool = True
    use3dLowres: bool = False
    useCascade: bool = False
    folds: str = "0 1 2 3 4"
    epochs: Annotated[int, WithinRange(1, 100000)] = 1000
    iterationsPerEpoch: Annotated[int, WithinRange(1, 100000)] = 250
    gpus: str = ""
    runFindBest: bool = True
    gpuMemoryTarget: Annotated[float, WithinRange(0, 1024)] = 0.0
    fineTuningEpochs: Annotated[int, WithinRange(0, 100000)] = 0  # 0: the engine's default


class AutoSegTrainLogic(ScriptedLoadableModuleLogic):
    """Slicer's module logic: the parameter node. The work is in ``AutoSegTrainLib``."""

    def getParameterNode(self) -> AutoSegTrainParameterNode:
        return AutoSegTrainParameterNode(super().getParameterNode())


class AutoSegTrainWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: dataset, cases, training and progress, top to bottom."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: AutoSegTrainLogic | None = None
        self._parameterNode: AutoSegTrainParameterNode | None = None
        self._parameterNodeGuiTag = None
        self._dataset: DatasetInfo | None = None
        self._run: TrainingRun | None = None
        self._plotModified = 0.0
        self._devices: concurrent.futures.Future[DeviceInfo] | None = None
        self._deviceInfo: DeviceInfo | None = None
        self._timer = qt.QTimer()

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/AutoSegTrain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        self._channels = ChannelSelectors(
            self.ui.channelVolumesWidget.layout(), self.updateButtons, _("{channel} volume:")
        )
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = AutoSegTrainLogic()
        self.preferences = Preferences.load(qt.QSettings())
        self.ui.rawRootPathLineEdit.currentPath = str(self.preferences.raw_folder)
        self.ui.preprocessedRootPathLineEdit.currentPath = str(self.preferences.preprocessed_folder)
        self.ui.resultsRootPathLineEdit.currentPath = str(self.preferences.results_folder)
        self.ui.stepsTableWidget.setColumnCount(len(COLUMNS))
        self.ui.stepsTableWidget.setHorizontalHeaderLabels(list(COLUMNS))
        self._cases = CaseListPanel(
            self.ui, self._onCasesChanged, self._showStatus, self.updateButtons
        )
        self._improve = ImprovePanel(
            self.ui, self._request, lambda: self.preferences, self._startRun, self._showStatus,
            self.updateButtons,
        )  # fmt: skip
        for label, formatName in EXPORT_FORMATS.items():
            self.ui.exportFormatComboBox.addItem(label, formatName)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        ui = self.ui
        for edit in (
            ui.rawRootPathLineEdit,
            ui.preprocessedRootPathLineEdit,
            ui.resultsRootPathLineEdit,
        ):
            edit.connect("currentPathChanged(QString)", self.onFoldersChanged)
        self.ui.datasetComboBox.connect("currentIndexChanged(int)", self.onDatasetChanged)
        self.ui.refreshDatasetsButton.connect("clicked(bool)", self.refreshDatasets)
        self.ui.createDatasetButton.connect("clicked(bool)", self.onCreateDataset)
        self.ui.addCaseButton.connect("clicked(bool)", self.onAddCase)
        self.ui.verifyButton.connect("clicked(bool)", self.onVerify)
        self.ui.startTrainingButton.connect("clicked(bool)", self.onStartTraining)
        self.ui.cancelTrainingButton.connect("clicked(bool)", self.onCancelTraining)
        self.ui.exportModelButton.connect("clicked(bool)", self.onExportModel)
        self.ui.trainDeviceComboBox.connect("currentIndexChanged(int)", self._showGpuAdvice)
        self.ui.gpuMemoryTargetSpinBox.connect("valueChanged(double)", self._showGpuAdvice)
        self.ui.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self._timer.setInterval(POLL_INTERVAL_MS)
        self._timer.connect("timeout()", self.onPoll)

        self._fillDevices(None)
        self._devices = detect_devices_in_background(self._python())
        self._timer.start()
        self.initializeParameterNode()
        self.refreshDatasets()

    def cleanup(self) -> None:
        if self._run is not None and not self._run.is_finished:
            # Blocking: daemon threads die with Slicer. Training saves its latest checkpoint.
            self._run.cancel(timeout=10.0, block=True)
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
        self._cases.forget()
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode: AutoSegTrainParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
        self.updateButtons()

    def _python(self) -> str:
        custom = self.preferences.python_executable
        return str(custom) if custom else default_python()

    # Dataset -----------------------------------------------------------------------------------

    def onFoldersChanged(self, _path: str = "") -> None:
        try:
            self.preferences = Preferences.update(
                qt.QSettings(),
                raw_folder=Path(self.ui.rawRootPathLineEdit.currentPath),
                preprocessed_folder=Path(self.ui.preprocessedRootPathLineEdit.currentPath),
                results_folder=Path(self.ui.resultsRootPathLineEdit.currentPath),
            )
        except ValueError as error:  # e.g. a half-typed relative path: say so, keep the old one
            self.ui.datasetInfoLabel.text = str(error)
            return
        self.refreshDatasets()

    def refreshDatasets(self) -> None:
        current = self._dataset.folder if self._dataset else None
        combo = self.ui.datasetComboBox
        wasBlocked = combo.blockSignals(True)
        combo.clear()
        for info in list_datasets(self.preferences.raw_folder):
            combo.addItem(info.folder.name, str(info.folder))
        index = combo.findData(str(current)) if current else 0
        combo.setCurrentIndex(max(index, 0))
        combo.blockSignals(wasBlocked)
        self.onDatasetChanged(combo.currentIndex)

    def onCreateDataset(self) -> None:
        channels = [c.strip() for c in self.ui.newDatasetChannelsLineEdit.text.split(",")]
        with slicer.util.tryWithErrorDisplay(_("Could not create the dataset."), waitCursor=True):
            self._dataset = create_dataset(
                self.preferences.raw_folder,
                self.ui.newDatasetIdSpinBox.value,
                self.ui.newDatasetNameLineEdit.text.strip(),
                channels,
            )
            self.refreshDatasets()

    def onDatasetChanged(self, index: int) -> None:
        folder = self.ui.datasetComboBox.itemData(index) if index >= 0 else None
        self._dataset = None
        self.ui.datasetInfoLabel.text = _("No dataset in {folder}: create one.").format(
            folder=self.preferences.raw_folder
        )
        if folder:
            try:
                self._dataset = open_dataset(Path(folder))
            except (ValueError, OSError) as error:
                self.ui.datasetInfoLabel.text = str(error)
        if self._dataset:
            labels = ", ".join(n for n in self._dataset.labels if n != "background") or "-"
            self.ui.datasetInfoLabel.text = _("{n} cases. Channels: {c}. Labels: {l}.").format(
                n=len(self._dataset.case_ids), c=", ".join(self._dataset.channel_names), l=labels
            )
        self._channels.set_channels(self._dataset.channel_names if self._dataset else ())
        self._cases.show(self._dataset)
        if self._run is None:
            self._showFoldStatuses()
        self.updateButtons()

    def _showFoldStatuses(self) -> None:
        """What the results folder says about the chosen folds (e.g. after a Slicer restart)."""
        rows = []
        with contextlib.suppress(AutoSegError, ValueError):  # bad choices: reported on Train
            if self._dataset and self._parameterNode:
                rows = fold_status_rows(self.preferences.results_folder, self._request())
        self._fillTable(rows)

    def _fillTable(self, rows) -> None:
        table = self.ui.stepsTableWidget
        table.setRowCount(len(rows))
        for row, cells in enumerate(rows):
            for column, text in enumerate(cells):
                table.setItem(row, column, qt.QTableWidgetItem(text))

    # Cases -------------------------------------------------------------------------------------

    def _onCasesChanged(self, info: DatasetInfo) -> None:
        self._dataset = info
        self.refreshDatasets()

    def _showStatus(self, text: str) -> None:
        self.ui.trainingStatusLabel.text = text

    def onAddCase(self) -> None:
        volumes = self._channels.volumes()
        segmentation = self.ui.segmentationSelector.currentNode()
        with slicer.util.tryWithErrorDisplay(_("Could not add the case.")):
            try:
                exported = export_case(self._dataset, volumes, segmentation)
            except NewLabelsNeedConfirmation as newLabels:
                if not slicer.util.confirmOkCancelDisplay(
                    _("Add these labels to the dataset?\n{names}").format(
                        names="\n".join(newLabels.new_names)
                    )
                ):
                    return
                exported = export_case(self._dataset, volumes, segmentation, allow_new_labels=True)
            self._dataset = exported.dataset
            self.refreshDatasets()
            self.ui.trainingStatusLabel.text = _("Added case {case}.").format(case=exported.case_id)

    def onVerify(self) -> None:
        self._startRun([verify_step(self._dataset.folder.name, self.preferences.raw_folder)])

    # Training ----------------------------------------------------------------------------------

    def _request(self) -> TrainingRequest:
        device = self.ui.trainDeviceComboBox.currentData or "auto"
        return request_from_choices(self._dataset.folder.name, self._parameterNode, device)

    def onStartTraining(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start training."), waitCursor=True):
            if not ensure_engine_dependencies("AutoSegTrain", self.preferences.python_executable):
                return
            request = self._request()
            steps = plan_steps(
                request,
                self.preferences.results_folder,
                self.preferences.preprocessed_folder,
                raw_root=self.preferences.raw_folder,
            )
            self._startRun(steps, gpus=request.gpus)

    def _startRun(self, steps, gpus: tuple[int, ...] = ()) -> TrainingRun:
        self._run = TrainingRun(
            steps, python=self._python(), env_overrides=self.preferences.engine_env(), gpus=gpus
        )
        self.ui.stepsTableWidget.setRowCount(len(steps))
        self.updateButtons()
        return self._run

    def onExportModel(self) -> None:
        formatName = self.ui.exportFormatComboBox.currentData or "autoseg"
        dataset = self._dataset.folder.name
        path = qt.QFileDialog.getSaveFileName(
            None,
            _("Export model"),
            str(Path.home() / default_zip_name(dataset, formatName)),
            _("Zip files (*.zip)"),
        )
        if not path:
            return
        with slicer.util.tryWithErrorDisplay(_("Could not export the model.")):
            results = self.preferences.results_folder
            self._startRun([export_step(dataset, Path(path), results, format_name=formatName)])

    def onCancelTraining(self) -> None:
        if self._run is not None:
            self._run.cancel()  # returns at once; the processes save a checkpoint and end
            self.ui.trainingStatusLabel.text = _("Cancelling: saving the latest checkpoints...")

    def onPoll(self) -> None:
        if self._devices is not None and self._devices.done():
            self._fillDevices(self._devices.result())
            self._devices = None
        run = self._run
        snapshot = run.tick() if run is not None else None
        if snapshot is not None:
            self._showSnapshot(snapshot)
            lines = run.take_log()
            if lines:
                self.ui.logTextEdit.appendPlainText("\n".join(lines))
        if snapshot is not None and snapshot.finished:
            self._run = None
            self.updateButtons()
            if run.failed_message:
                slicer.util.errorDisplay(run.failed_message)
            if [step.key for step in snapshot.steps] == [VERIFY_KEY]:  # keep its row and summary
                self.ui.trainingStatusLabel.text = "\n".join(run.output_lines(VERIFY_KEY))
            else:
                self.refreshDatasets()
                self._improve.runFinished(run)  # after an improvement: comparison, Predict

    def _showSnapshot(self, snapshot) -> None:
        self._fillTable([step_row(step) for step in snapshot.steps])
        self.ui.trainingStatusLabel.text = snapshot.status
        plots = [s.fold_progress.progress_png for s in snapshot.running if s.fold_progress]
        plot = Path(plots[0]) if plots and plots[0] else None
        modified = plot.stat().st_mtime if plot is not None and plot.is_file() else None
        if modified is not None and modified != self._plotModified:
            pixmap = qt.QPixmap(str(plot))
            if not pixmap.isNull():  # null when caught half-written: read again next time
                self._plotModified = modified
                self.ui.progressPlotLabel.setPixmap(pixmap.scaledToWidth(400))

    def _fillDevices(self, info: DeviceInfo | None) -> None:
        self._deviceInfo = info
        combo = self.ui.trainDeviceComboBox
        combo.clear()
        for label, device in device_choices(info, per_gpu=False):
            combo.addItem(label, device)
        if info is not None:
            combo.toolTip = info.summary()
        self._showGpuAdvice()

    def _showGpuAdvice(self, *_args) -> None:
        device = self.ui.trainDeviceComboBox.currentData or "auto"
        target = self.ui.gpuMemoryTargetSpinBox.value or None
        self.ui.gpuAdviceLabel.text = gpu_memory_advice(self._deviceInfo, device, target)

    def updateButtons(self, *_args) -> None:
        running = self._run is not None
        hasDataset = self._dataset is not None
        volumesChosen = self._channels.all_chosen()
        segmentation = self.ui.segmentationSelector.currentNode()
        self.ui.addCaseButton.enabled = (
            hasDataset and volumesChosen and segmentation is not None and not running
        )
        self.ui.verifyButton.enabled = hasDataset and not running
        self.ui.startTrainingButton.enabled = hasDataset and not running
        self.ui.cancelTrainingButton.enabled = running
        self.ui.createDatasetButton.enabled = not running
        self.ui.exportModelButton.enabled = hasDataset and not running
        self._cases.updateButtons(idle=not running)
        choices = hasDataset and self._parameterNode is not None
        self._improve.updateButtons(idle=not running, hasChoices=choices)
