"""The Predict panel's "Correct and add as training case" button: the annotation loop's wiring.

After Segment, the first click opens the Segment Editor on the result; the second adds the volume
and the corrected segmentation as the next case of the model's raw dataset. Only the Slicer wiring
lives here (module switch, dialogs, button text); the work is in ``training_case`` (tested headless
with real MRML). Kept apart from predict_panel.py because it is its own step of the loop, with its
own state (which result is being corrected, whether the editor was opened).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import qt
import slicer
from slicer.i18n import tr as _

from AutoSegCoreLib.case_export import NewLabelsNeedConfirmation
from AutoSegPredictLib.training_case import SEGMENT_EDITOR_MODULE, Correction, find_training_dataset


class CorrectionPanel:
    """Runs the correct button for the result of the last segmentation.

    ``ui``: the module's widgets (``correctButton``, ``statusLabel``); ``rawRoots()`` gives the
    folders where the model's raw dataset is looked for; ``defaultFolder()`` where the folder
    dialog starts; ``refreshButtons()`` asks the panel to enable its buttons again.
    """

    def __init__(
        self,
        ui: Any,
        rawRoots: Callable[[], list[Path | None]],
        defaultFolder: Callable[[], Path],
        refreshButtons: Callable[[], None],
    ) -> None:
        self.ui = ui
        self._rawRoots, self._defaultFolder = rawRoots, defaultFolder
        self._refreshButtons = refreshButtons
        self._correction: Correction | None = None
        self._editing = False
        ui.correctButton.connect("clicked(bool)", self.onCorrect)

    @property
    def available(self) -> bool:
        """A result waits to be corrected (the panel enables the button when also idle)."""
        return self._correction is not None

    def offer(self, segmentation, volumes: tuple, datasetName: str) -> None:
        """A new result can be corrected and added to the dataset named by the model's plans."""
        self._correction = Correction(segmentation, volumes, datasetName)
        self._refreshButtons()

    def end(self) -> None:
        """Forget the result (a new segmentation started, the scene closed, the case was added)."""
        self._correction, self._editing = None, False
        self.ui.correctButton.text = _("Correct and add as training case")
        self._refreshButtons()

    def onCorrect(self) -> None:
        """First click: correct in the Segment Editor; second click: add as a training case."""
        correction = self._correction
        if correction is None or not correction.still_in_scene:
            self.end()
            self.ui.statusLabel.text = _("The segmentation or its volume is gone; segment again.")
            return
        if not self._editing:
            self._openEditor(correction)
            return
        with slicer.util.tryWithErrorDisplay(
            _("Could not add the training case."), waitCursor=True
        ):
            folder = self._trainingDataset(correction.dataset_name)
            exported = self._addCase(correction, folder) if folder else None
            if exported is not None:
                self.ui.statusLabel.text = _("Added case {case} to {dataset}.").format(
                    case=exported.case_id, dataset=folder.name
                )
                self.end()

    def _openEditor(self, correction: Correction) -> None:
        correction.open_editor()
        slicer.util.selectModule(SEGMENT_EDITOR_MODULE)
        self._editing = True
        self.ui.correctButton.text = _("Add as training case")
        self.ui.statusLabel.text = _(
            "Correct the segmentation in the Segment Editor, then come back here and click "
            "'Add as training case'."
        )

    def _trainingDataset(self, name: str) -> Path | None:
        """The model's raw dataset: found under the raw folders, else chosen by the user."""
        found = find_training_dataset(name, self._rawRoots())
        if found is not None:
            return found
        chosen = qt.QFileDialog.getExistingDirectory(
            self.ui.correctButton,
            _("Choose the raw dataset folder of {name}").format(name=name or _("the model")),
            str(self._defaultFolder()),
        )
        return Path(chosen) if chosen else None

    def _addCase(self, correction: Correction, folder: Path):
        try:
            return correction.add_case(folder)
        except NewLabelsNeedConfirmation as question:
            if not slicer.util.confirmOkCancelDisplay(str(question)):
                return None
            return correction.add_case(folder, allow_new_labels=True)
