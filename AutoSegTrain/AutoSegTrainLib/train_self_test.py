"""The AutoSegTrain module's self-tests, run inside Slicer (ctest, or the module's Test button).

Two classes, because the extension build machines have neither torch nor network: the fast one
checks the panel, its parameter node and the case export, and needs neither; the end-to-end one
trains a fold and runs only where torch is importable (it says why it skipped otherwise). Both use
AutoSegCoreLib.synthetic_scenario, which the headless tests run too. Waiting for training processes
Slicer's events, so the application stays responsive during the run.
"""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from AutoSegCoreLib.process_runner import default_python
from AutoSegCoreLib.synthetic_scenario import (
    add_synthetic_case,
    end_to_end_skip_reason,
    export_scenario_cases,
    train_scenario_model,
)
from AutoSegTrainLib.dataset_folder import open_dataset


class AutoSegTrainTest(ScriptedLoadableModuleTest):
    """Fast: no torch, no network. The Test button also runs the end-to-end test when it can."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        for test in (self.test_panel_shows_its_parameter_node, self.test_cases_are_exported):
            self.setUp()
            test()
        reason = end_to_end_skip_reason()
        if reason:
            self.delayDisplay(reason)
            return
        endToEnd = AutoSegTrainEndToEndTest()
        endToEnd.setUp()
        endToEnd.test_synthetic_cases_train_a_fold()

    def test_panel_shows_its_parameter_node(self) -> None:
        self.delayDisplay("Opening the AutoSeg Train panel")
        slicer.util.selectModule("AutoSegTrain")
        widget = slicer.modules.AutoSegTrainWidget
        _, segmentation = add_synthetic_case(slicer.mrmlScene, 0)
        widget.logic.getParameterNode().segmentation = segmentation
        self.assertIs(widget.ui.segmentationSelector.currentNode(), segmentation)
        widget.ui.foldsLineEdit.text = "0 1"
        self.assertEqual(widget.logic.getParameterNode().folds, "0 1")
        self.delayDisplay("Panel test passed")

    def test_cases_are_exported(self) -> None:
        self.delayDisplay("Exporting three synthetic cases into a new dataset")
        with tempfile.TemporaryDirectory() as folder:
            info, caseIds = export_scenario_cases(slicer.mrmlScene, Path(folder))
            self.assertEqual(len(caseIds), 3)
            self.assertEqual(open_dataset(info.folder).case_ids, tuple(caseIds))
        self.delayDisplay("Export test passed")


class AutoSegTrainEndToEndTest(ScriptedLoadableModuleTest):
    """Trains a fold on the synthetic cases in background processes; needs torch."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    @unittest.skipIf(end_to_end_skip_reason(), end_to_end_skip_reason())
    def test_synthetic_cases_train_a_fold(self) -> None:
        self.delayDisplay("Exporting synthetic cases and training for a few iterations")
        with tempfile.TemporaryDirectory() as folder:
            model = train_scenario_model(
                slicer.mrmlScene, Path(folder), default_python(), on_tick=_processEvents
            )
            self.assertTrue(model.fold_done)
            self.assertEqual(len(model.case_ids), 3)
        self.delayDisplay("End-to-end test passed")


def _processEvents(_status: str) -> None:
    """Keeps Slicer responsive while a test waits for the engine."""
    slicer.app.processEvents()
