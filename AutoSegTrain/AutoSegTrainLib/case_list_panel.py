"""The Train panel's case table and its Load case / Save edits / Remove case buttons.

Only the Slicer wiring lives here (dialogs, slice views, which row is selected); the work is in
``dataset_cases`` (tested headless with real MRML). Kept apart from train_panel.py so that each
file stays a readable size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import qt
import slicer
from slicer.i18n import tr as _

from autoseg.errors import AutoSegError
from AutoSegCoreLib.case_export import NewLabelsNeedConfirmation
from AutoSegCoreLib.case_loading import LoadedCase
from AutoSegCoreLib.dataset_folder import DatasetInfo
from AutoSegTrainLib.dataset_cases import (
    CASE_COLUMNS,
    load_dataset_case,
    remove_case,
    save_case_edits,
    summarize_cases,
)


class CaseListPanel:
    """Fills the case table from the dataset and runs the buttons under it.

    ``ui``: the module's widgets; ``datasetChanged(info)`` is called after a save or a removal
    changed the dataset, ``showStatus(text)`` says what happened, and ``refreshButtons()`` asks
    the panel to enable its buttons again (it calls ``updateButtons`` with whether it is idle).
    """

    def __init__(
        self,
        ui: Any,
        datasetChanged: Callable[[DatasetInfo], None],
        showStatus: Callable[[str], None],
        refreshButtons: Callable[[], None],
    ) -> None:
        self.ui = ui
        self._datasetChanged, self._showStatus = datasetChanged, showStatus
        self._refreshButtons = refreshButtons
        self._dataset: DatasetInfo | None = None
        self._loaded: tuple[str, LoadedCase] | None = None
        self._caseIds: list[str] = []
        ui.caseTableWidget.setColumnCount(len(CASE_COLUMNS))
        ui.caseTableWidget.setHorizontalHeaderLabels(list(CASE_COLUMNS))
        ui.loadCaseButton.connect("clicked(bool)", self.onLoadCase)
        ui.saveCaseButton.connect("clicked(bool)", self.onSaveCase)
        ui.removeCaseButton.connect("clicked(bool)", self.onRemoveCase)

    def show(self, dataset: DatasetInfo | None) -> None:
        """One row per case of ``dataset`` (none without one)."""
        if dataset is None or self._dataset is None or dataset.folder != self._dataset.folder:
            self._loaded = None  # a case of another dataset cannot be saved into this one
        self._dataset = dataset
        summaries = summarize_cases(dataset) if dataset is not None else []
        self._caseIds = [summary.case_id for summary in summaries]
        table = self.ui.caseTableWidget
        table.setRowCount(len(summaries))
        for row, summary in enumerate(summaries):
            for column, text in enumerate(summary.row()):
                table.setItem(row, column, qt.QTableWidgetItem(text))

    def forget(self) -> None:
        """The scene was closed: the loaded case's nodes are gone."""
        self._loaded = None

    def updateButtons(self, idle: bool) -> None:
        hasCases = bool(self._caseIds) and idle
        self.ui.loadCaseButton.enabled = hasCases
        self.ui.removeCaseButton.enabled = hasCases
        self.ui.saveCaseButton.enabled = idle and self._loaded is not None

    def _selectedCase(self) -> str:
        row = self.ui.caseTableWidget.currentRow()
        if not 0 <= row < len(self._caseIds):
            raise AutoSegError("No case is selected. Click a case in the table first.")
        return self._caseIds[row]

    def onLoadCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not load the case."), waitCursor=True):
            caseId = self._selectedCase()
            loaded = load_dataset_case(self._dataset, caseId)
            self._loaded = (caseId, loaded)
            slicer.util.setSliceViewerLayers(background=loaded.volumes[0], fit=True)
            self._showStatus(
                _("Loaded case {case}. Edit it in the Segment Editor, then Save edits.").format(
                    case=caseId
                )
            )
        self._refreshButtons()

    def onSaveCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not save the case.")):
            caseId, loaded = self._loaded
            if loaded.volumes[0].GetScene() is None or loaded.segmentation is None:
                raise AutoSegError(f"Case {caseId} is no longer in the scene. Load it again.")
            try:
                saved = save_case_edits(self._dataset, caseId, loaded)
            except NewLabelsNeedConfirmation as newLabels:
                question = _("Add these labels to the dataset?\n{names}")
                if not slicer.util.confirmOkCancelDisplay(
                    question.format(names="\n".join(newLabels.new_names))
                ):
                    return
                saved = save_case_edits(self._dataset, caseId, loaded, allow_new_labels=True)
            self._datasetChanged(saved.dataset)
            self._showStatus(_("Saved case {case}.").format(case=caseId))

    def onRemoveCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not remove the case.")):
            caseId = self._selectedCase()
            question = _(
                "Remove case {case} from the dataset?\nIts files move to the dataset's removed/ "
                "folder (nothing is deleted)."
            )
            if not slicer.util.confirmOkCancelDisplay(question.format(case=caseId)):
                return
            if self._loaded is not None and self._loaded[0] == caseId:
                self._loaded = None
            self._datasetChanged(remove_case(self._dataset, caseId))
            self._showStatus(_("Removed case {case}.").format(case=caseId))
