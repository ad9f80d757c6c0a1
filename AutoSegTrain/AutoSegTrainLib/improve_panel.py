"""The Train panel's Improve model button: fine-tune the dataset's model as one background job.

Only the Slicer wiring lives here (the button, its tooltip, the table after the run); the job is
``model_improvement`` (Qt-free, tested with real child processes) and runs through the panel's
usual ``TrainingRun``, so progress, the log box and Cancel are the training's. Kept apart from
train_panel.py so that each file stays a readable size, as case_list_panel.py is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import qt
import slicer
from slicer.i18n import tr as _

from autoseg.errors import AutoSegError
from AutoSegCoreLib.dependency_install import ensure_engine_dependencies
from AutoSegCoreLib.preferences import Preferences
from AutoSegTrainLib.model_improvement import (
    ModelImprovement,
    improvement_outcome,
    improvement_request,
    plan_improvement,
    switch_predict_to,
    why_not_improvable,
)
from AutoSegTrainLib.training_plan import EngineStep, TrainingRequest

# The configuration check boxes: the model to improve is the chosen configuration's.
_CONFIGURATION_BOXES = (
    "use2dCheckBox",
    "use3dFullresCheckBox",
    "use3dLowresCheckBox",
    "useCascadeCheckBox",
)


class ImprovePanel:
    """Runs Improve model and shows its outcome.

    ``request()`` is the panel's training request (raises AutoSegError for bad choices),
    ``preferences()`` the current data folders, ``startRun(steps, gpus)`` starts a TrainingRun
    and returns it, ``showStatus(text)`` says what happened and ``refreshButtons()`` asks the
    panel to update its buttons (a configuration was ticked).
    """

    def __init__(
        self,
        ui: Any,
        request: Callable[[], TrainingRequest],
        preferences: Callable[[], Preferences],
        startRun: Callable[[Sequence[EngineStep], tuple[int, ...]], Any],
        showStatus: Callable[[str], None],
        refreshButtons: Callable[[], None],
    ) -> None:
        self.ui = ui
        self._request, self._preferences = request, preferences
        self._startRun, self._showStatus = startRun, showStatus
        self._job: ModelImprovement | None = None
        self._run: Any = None
        ui.improveModelButton.connect("clicked(bool)", self.onImprove)
        for name in _CONFIGURATION_BOXES:
            getattr(ui, name).connect("toggled(bool)", lambda _checked: refreshButtons())

    def updateButtons(self, idle: bool, hasChoices: bool) -> None:
        """Enabled when idle and the chosen configuration of the dataset has a trained model
        (``hasChoices``: a dataset is chosen and the panel's choices can be read)."""
        reason = _("Choose a dataset.") if not hasChoices else None
        if reason is None:
            try:
                reason = why_not_improvable(self._preferences().results_folder, self._request())
            except AutoSegError as error:  # e.g. folds typed wrong: said again on click
                reason = str(error)
        button = self.ui.improveModelButton
        button.enabled = idle and reason is None
        button.toolTip = reason or _(
            "Fine-tune the trained model on the dataset as it is now (cases added or corrected "
            "since), keep the previous model as a version, compare both, and switch AutoSeg "
            "Predict to the improved model."
        )

    def onImprove(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not improve the model."), waitCursor=True):
            preferences = self._preferences()
            if not ensure_engine_dependencies("AutoSegTrain", preferences.python_executable):
                return
            request = improvement_request(self._request(), self.ui.fineTuningEpochsSpinBox.value)
            self._job = plan_improvement(
                request,
                preferences.results_folder,
                preferences.preprocessed_folder,
                raw_root=preferences.raw_folder,
            )
            self.ui.comparisonLabel.text = ""
            self._run = self._startRun(self._job.steps, request.gpus)

    def runFinished(self, run: Any) -> None:
        """Called by the panel when a run ended: after a complete improvement, show the
        comparison and switch the Predict module to the improved model."""
        if run is not self._run or self._job is None:
            return
        job, self._job, self._run = self._job, None, None
        if run.failed_message or run.cancelled:
            return  # the panel shows the failure; a cancelled fold resumes on the next click
        outcome = improvement_outcome(job)
        lines = outcome.table_lines()
        self.ui.comparisonLabel.text = "\n".join(lines)
        self.ui.logTextEdit.appendPlainText("\n".join(lines))
        switch_predict_to(qt.QSettings(), outcome)
        self._showStatus(outcome.summary())
