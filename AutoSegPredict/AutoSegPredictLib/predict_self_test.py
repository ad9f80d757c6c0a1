"""The AutoSegPredict module's self-tests, run inside Slicer (ctest, or the module's Test button).

Two classes, because the extension build machines have neither torch nor network: the fast one
checks the panel (its preselected volume) and the import of a prediction file written without
torch; the end-to-end one trains a tiny model and segments with it, and runs only where torch is
importable (it says why it skipped otherwise). Both use the engine's synthetic demo cases
(AutoSegCoreLib.synthetic_cases). Waiting for the engine processes Slicer's events.
"""

from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from AutoSegCoreLib.process_runner import default_python
from AutoSegCoreLib.segmentation_import import import_label_file
from AutoSegCoreLib.synthetic_cases import (
    SEGMENT_NAMES,
    demo_case_id,
    demo_dataset,
    end_to_end_skip_reason,
    load_demo_case,
    train_demo_model,
)
from AutoSegPredictLib.predict_logic import AutoSegPredictLogic

PREDICTION_TIMEOUT_S = 300.0


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
        with tempfile.TemporaryDirectory() as folder:
            (volume,) = load_demo_case(Path(folder), 0, with_labels=False).volumes
        slicer.util.selectModule("AutoSegPredict")
        widget = slicer.modules.AutoSegPredictWidget
        widget.initializeParameterNode()
        self.assertIs(widget.ui.inputVolumeSelector.currentNode(), volume)
        self.delayDisplay("Panel test passed")

    def test_a_prediction_imports(self) -> None:
        self.delayDisplay("Importing a label file made without torch onto its volume")
        with tempfile.TemporaryDirectory() as folder:
            (volume,) = load_demo_case(Path(folder), 1, with_labels=False).volumes
            labelFile = demo_dataset(Path(folder)) / "labelsTr" / f"{demo_case_id(1)}.nii.gz"
            labels = {name: value for value, name in enumerate(SEGMENT_NAMES, start=1)}
            segmentation = import_label_file(labelFile, volume, labels, name="prediction")
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
            modelFolder = train_demo_model(
                Path(folder) / "cache", Path(folder), python, on_tick=_processEvents
            )
            self.delayDisplay("Segmenting another synthetic volume through the logic")
            (volume,) = load_demo_case(Path(folder) / "cache", 5, with_labels=False).volumes
            job = AutoSegPredictLogic(python).start_segmentation(volume, modelFolder, device="cpu")
            deadline = time.monotonic() + PREDICTION_TIMEOUT_S
            while job.is_running and time.monotonic() < deadline:
                job.poll()
                _processEvents("")
                time.sleep(0.1)
            segmentation = job.finish(timeout=max(deadline - time.monotonic(), 1.0))
            segments = segmentation.GetSegmentation()
            self.assertEqual(segments.GetNumberOfSegments(), len(SEGMENT_NAMES))
            referenceRole = segmentation.GetReferenceImageGeometryReferenceRole()
            self.assertEqual(segmentation.GetNodeReference(referenceRole), volume)
        self.delayDisplay("End-to-end test passed")


def _processEvents(_status: str) -> None:
    """Keeps Slicer responsive while a test waits for the engine."""
    slicer.app.processEvents()
