"""The AutoSegTrain module's self-tests, run inside Slicer (ctest, or the module's Test button).

Two classes, because the extension build machines have neither torch nor network: the fast one
checks the panel, its parameter node and the case export, and needs neither; the end-to-end one
trains a fold and runs only where torch is importable (it says why it skipped otherwise). The
cases are the engine's synthetic demo cases (AutoSegCoreLib.synthetic_cases), generated into a
temporary folder. Waiting for training processes Slicer's events, so the application stays
responsive during the run.
"""

from __future__ import annotations

import tempfile
import time
import unittest
from pathlib import Path

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from autoseg.results_layout import FINAL_CHECKPOINT
from AutoSegCoreLib.case_export import export_case
from AutoSegCoreLib.dataset_folder import DatasetInfo, create_dataset, open_dataset
from AutoSegCoreLib.process_runner import default_python
from AutoSegCoreLib.synthetic_cases import end_to_end_skip_reason, load_demo_case
from AutoSegTrainLib.training_runs import TrainingRequest, TrainingRun, plan_steps

TRAINING_TIMEOUT_S = 600.0


def exportDemoCases(folder: Path) -> DatasetInfo:
    """Three synthetic cases loaded into the scene and added to a new dataset by the logic."""
    info = create_dataset(folder / "raw", 987, "SelfTest", ["CT"])
    for index in range(3):
        case = load_demo_case(folder / "cache", index)
        info = export_case(info, case.volumes, case.segmentation, allow_new_labels=True).dataset
    return info


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
        with tempfile.TemporaryDirectory() as folder:
            segmentation = load_demo_case(Path(folder), 0).segmentation
        widget.logic.getParameterNode().segmentation = segmentation
        self.assertIs(widget.ui.segmentationSelector.currentNode(), segmentation)
        widget.ui.foldsLineEdit.text = "0 1"
        self.assertEqual(widget.logic.getParameterNode().folds, "0 1")
        self.delayDisplay("Panel test passed")

    def test_cases_are_exported(self) -> None:
        self.delayDisplay("Exporting three synthetic cases into a new dataset")
        with tempfile.TemporaryDirectory() as folder:
            info = exportDemoCases(Path(folder))
            self.assertEqual(len(open_dataset(info.folder).case_ids), 3)
        self.delayDisplay("Export test passed")


class AutoSegTrainEndToEndTest(ScriptedLoadableModuleTest):
    """Trains a fold on the synthetic cases in background processes; needs torch."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    @unittest.skipIf(end_to_end_skip_reason(), end_to_end_skip_reason())
    def test_synthetic_cases_train_a_fold(self) -> None:
        self.delayDisplay("Exporting synthetic cases and training for a few iterations")
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            info = exportDemoCases(folder)
            request = TrainingRequest(
                dataset=info.folder.name,
                configurations=("3d_fullres",),
                folds=("all",),
                device="cpu",
                epochs=1,
                iterations_per_epoch=2,
                run_find_best=False,
                extra_train_args=("--set", "val_iterations=2"),
            )
            steps = plan_steps(
                request, folder / "results", folder / "preprocessed", raw_root=folder / "raw"
            )
            run = TrainingRun(steps, python=default_python())
            deadline = time.monotonic() + TRAINING_TIMEOUT_S
            while not run.is_finished and time.monotonic() < deadline:
                run.tick()
                slicer.app.processEvents()
                time.sleep(0.2)
            if not run.is_finished:
                run.cancel(block=True)
            self.assertTrue(run.is_finished, "training did not finish in time")
            self.assertIsNone(run.failed_message)
            self.assertTrue((steps[-1].fold_dir / FINAL_CHECKPOINT).is_file())
        self.delayDisplay("End-to-end test passed")
