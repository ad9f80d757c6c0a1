"""AutoSegTrain: turn annotated volumes into a dataset and train AutoSeg models on it.

This file registers the module and checks the Slicer it runs in. AutoSeg needs Slicer 5.10 or
newer (Python 3.12); in an older Slicer the module still registers and its panel and help show
one message instead of an import traceback. Everything up to that check must therefore run in
Python 3.9 (Slicer 5.8), and the panel (AutoSegTrainLib/train_panel.py) and the self-tests
(AutoSegTrainLib/train_self_test.py) are imported only after it.
"""

from __future__ import annotations

import sys
from pathlib import Path

# From a source checkout (Slicer's "Additional module paths"), the shared helpers and the engine sit
# in ../AutoSegCore; a built extension installs them on Slicer's Python path instead.
_SOURCE_CORE = Path(__file__).resolve().parent.parent / "AutoSegCore"
if (_SOURCE_CORE / "AutoSegCoreLib").is_dir() and str(_SOURCE_CORE) not in sys.path:
    sys.path.append(str(_SOURCE_CORE))

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import ScriptedLoadableModule

from AutoSegCoreLib.extension_info import (
    CONTRIBUTORS,
    help_text,
    unsupported_classes,
    unsupported_reason,
)

UNSUPPORTED = unsupported_reason()
_ICONS = Path(__file__).resolve().parent / "Resources" / "Icons"


class AutoSegTrain(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("AutoSeg Train")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = list(CONTRIBUTORS)
        summary = _(
            "Build a training dataset from volumes and segmentations, then plan, preprocess and "
            "train self-configuring segmentation models (the nnU-Net v2 method) in background "
            "processes, with live progress. Segment names become the dataset's labels; every "
            "case keeps its volume's geometry. Cancel saves the latest checkpoint, and an "
            "interrupted fold resumes where it stopped. Needs 3D Slicer 5.10 or newer."
            "<br><br>The annotation loop, tried without data: Sample Data > AutoSeg > AutoSeg "
            "synthetic CT loads a synthetic volume with its segmentation (organ, lesion). "
            "Create a dataset (channel CT), add the case, load two more samples and add them, then "
            "train (fold all, a few epochs on a CPU). Segment another sample with AutoSeg "
            "Predict, correct the result in the Segment Editor and add it as a case; a case in the "
            "list can be loaded, corrected and saved back, or removed (its files go to removed/). "
            "Then Improve model: the trained model is fine-tuned on the grown dataset in minutes "
            "(only new or edited cases are preprocessed), the previous model is kept as a version, "
            "a table compares both on the added cases, and AutoSeg Predict switches to the "
            "improved model (the previous one stays in its list)."
        )
        self.parent.helpText = help_text(summary, UNSUPPORTED)
        self.parent.acknowledgementText = _(
            "AutoSeg implements the nnU-Net v2 method (Isensee et al., Nature Methods 2021)."
        )
        if not UNSUPPORTED:  # Sample Data gets the synthetic demo volume once Slicer has started
            slicer.app.connect("startupCompleted()", _registerSampleData)


def _registerSampleData() -> None:
    """Adds the synthetic demo volume to Sample Data (``register_sample_data`` is imported below,
    only in a supported Slicer)."""
    register_sample_data(_ICONS / "AutoSegTrain.png")


if UNSUPPORTED:
    AutoSegTrainWidget, AutoSegTrainTest = unsupported_classes("AutoSegTrain", UNSUPPORTED)
else:
    from AutoSegTrainLib.sample_data import register_sample_data
    from AutoSegTrainLib.train_panel import (
        AutoSegTrainLogic,
        AutoSegTrainParameterNode,
        AutoSegTrainWidget,
    )
    from AutoSegTrainLib.train_self_test import AutoSegTrainEndToEndTest, AutoSegTrainTest

    __all__ = [
        "AutoSegTrain",
        "AutoSegTrainEndToEndTest",
        "AutoSegTrainLogic",
        "AutoSegTrainParameterNode",
        "AutoSegTrainTest",
        "AutoSegTrainWidget",
    ]
