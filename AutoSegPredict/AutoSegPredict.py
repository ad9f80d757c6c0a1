"""AutoSegPredict: segment the selected volume with a trained AutoSeg or nnU-Net v2 model in one click.

This file registers the module and checks the Slicer it runs in. AutoSeg needs Slicer 5.10 or
newer (Python 3.12); in an older Slicer the module still registers and its panel and help show
one message instead of an import traceback. Everything up to that check must therefore run in
Python 3.9 (Slicer 5.8), and the panel (AutoSegPredictLib/predict_panel.py) and the self-tests
(AutoSegPredictLib/predict_self_test.py) are imported only after it.

Console use, without the GUI::

    from AutoSegPredict import AutoSegPredictLogic
    seg = AutoSegPredictLogic().segment(volumeNode, "/data/results/Dataset004_Hippocampus")
"""

from __future__ import annotations

import sys
from pathlib import Path

# From a source checkout (Slicer's "Additional module paths"), the shared helpers and the engine sit
# in ../AutoSegCore; a built extension installs them on Slicer's Python path instead.
_SOURCE_CORE = Path(__file__).resolve().parent.parent / "AutoSegCore"
if (_SOURCE_CORE / "AutoSegCoreLib").is_dir() and str(_SOURCE_CORE) not in sys.path:
    sys.path.append(str(_SOURCE_CORE))

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


class AutoSegPredict(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent) -> None:
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("AutoSeg Predict")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = list(CONTRIBUTORS)
        summary = _(
            "Segment a volume with a model trained by AutoSeg or by nnU-Net v2 (no nnunetv2 "
            "install needed). Choose a dataset's results folder to use the configuration, fold "
            "ensemble and postprocessing that model selection recommended, or a single model "
            "folder; model zips of both tools are imported after a safety check. The prediction "
            "runs in a background process; the result is a new segmentation with the dataset's "
            "label names, or goes into a chosen one (segments of the same names replaced). "
            "'Correct and add as training case' opens the result in the Segment Editor and then "
            "adds the volume and the corrected segmentation to the model's dataset. Closing the "
            "scene cancels a running prediction. Needs 3D Slicer 5.10 or newer."
        )
        self.parent.helpText = help_text(summary, UNSUPPORTED)
        self.parent.acknowledgementText = _(
            "AutoSeg implements the nnU-Net v2 method (Isensee et al., Nature Methods 2021)."
        )


if UNSUPPORTED:
    AutoSegPredictWidget, AutoSegPredictTest = unsupported_classes("AutoSegPredict", UNSUPPORTED)
else:
    from AutoSegPredictLib.predict_panel import (
        AutoSegPredictLogic,
        AutoSegPredictParameterNode,
        AutoSegPredictWidget,
    )
    from AutoSegPredictLib.predict_self_test import AutoSegPredictEndToEndTest, AutoSegPredictTest

    __all__ = [
        "AutoSegPredict",
        "AutoSegPredictEndToEndTest",
        "AutoSegPredictLogic",
        "AutoSegPredictParameterNode",
        "AutoSegPredictTest",
        "AutoSegPredictWidget",
    ]
