"""The AutoSegPredict module's self-tests, run inside Slicer (ctest, or the module's Test button).

Two classes, because the extension build machines have neither torch nor network: the fast one
checks the panel (its preselected volume) and the import of a prediction file written without
torch; the end-to-end one trains a tiny model and segments with it, and runs only where torch is
importable (it says why it skipped otherwise). Both use AutoSegCoreLib.synthetic_scenario, which
the headless tests run too. Waiting for the engine processes Slicer's events.
"""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from AutoSegCoreLib.process_runner import default_python
from AutoSegCoreLib.synthetic_scenario import (
    SEGMENT_NAMES,
    add_synthetic_case,
    end_to_end_skip_reason,
    import_scenario_prediction,
    segment_scenario_volume,
    train_scenario_model,
)


class AutoSegPredictTest(ScriptedLoadableModuleTest):
    """Fast: no torch, no network. The Test button also runs the end-to-end test when it can."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        for test in (self.test_panel_preselects_a_listed_volume, self.test_a_prediction_imports):
            self.setUp()
            test()
        reason = end_to_end_skip_reason()
        if reason:
            self.delayDisplay(reason)
            return
        endToEnd = AutoSegPredictEndToEndTest()
        endToEnd.setUp()
        endToEnd.test_segment_synthetic_volume()

    def test_panel_preselects_a_listed_volume(self) -> None:
        self.delayDisplay("Opening the AutoSeg Predict panel")
        slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "not an image")
        volume, _ = add_synthetic_case(slicer.mrmlScene, 0)
        slicer.util.selectModule("AutoSegPredict")
        widget = slicer.modules.AutoSegPredictWidget
        widget.initializeParameterNode()
        self.assertIs(widget.ui.inputVolumeSelector.currentNode(), volume)
        self.delayDisplay("Panel test passed")

    def test_a_prediction_imports(self) -> None:
        self.delayDisplay("Importing a label file made without torch onto an oblique volume")
        with tempfile.TemporaryDirectory() as folder:
            volume, segmentation = import_scenario_prediction(slicer.mrmlScene, Path(folder))
        segments = segmentation.GetSegmentation()
        self.assertEqual(segments.GetNumberOfSegments(), len(SEGMENT_NAMES))
        referenceRole = segmentation.GetReferenceImageGeometryReferenceRole()
        self.assertEqual(segmentation.GetNodeReference(referenceRole), volume)
        self.delayDisplay("Import test passed")


class AutoSegPredictEndToEndTest(ScriptedLoadableModuleTest):
    """Trains a tiny model on synthetic cases, then segments a new volume; needs torch."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    @unittest.skipIf(end_to_end_skip_reason(), end_to_end_skip_reason())
    def test_segment_synthetic_volume(self) -> None:
        self.delayDisplay("Training a tiny model on synthetic cases (under a minute)")
        with tempfile.TemporaryDirectory() as folder:
            python = default_python()
            model = train_scenario_model(
                slicer.mrmlScene, Path(folder), python, on_tick=_processEvents
            )
            self.delayDisplay("Segmenting a fourth, oblique volume through the logic")
            volume, segmentation = segment_scenario_volume(
                slicer.mrmlScene, model, python, on_tick=_processEvents
            )
            segments = segmentation.GetSegmentation()
            self.assertEqual(segments.GetNumberOfSegments(), len(SEGMENT_NAMES))
            referenceRole = segmentation.GetReferenceImageGeometryReferenceRole()
            self.assertEqual(segmentation.GetNodeReference(referenceRole), volume)
        self.delayDisplay("End-to-end test passed")


def _processEvents(_status: str) -> None:
    """Keeps Slicer responsive while a test waits for the engine."""
    slicer.app.processEvents()
