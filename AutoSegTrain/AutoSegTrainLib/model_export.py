"""The Train panel's "Export model": the ``autoseg export_model`` step for a zip to share.

Two formats, both written by the engine (atomically, never over an existing file): AutoSeg's own
zip, which ``autoseg import_model`` and the Predict panel read, and nnU-Net v2's (``--format
nnunet``), which ``nnUNetv2_install_pretrained_model_from_zip`` installs for people who run
nnU-Net itself. The step runs through ``TrainingRun`` like the other steps, so its output goes to
the panel's log box and a failure shows the engine's one-line error.
"""

from __future__ import annotations

import os
from pathlib import Path

from autoseg.errors import AutoSegError
from AutoSegTrainLib.training_plan import EngineStep

EXPORT_KEY = "export"
#: Panel label -> the engine's ``--format``.
EXPORT_FORMATS = {"AutoSeg zip": "autoseg", "nnU-Net v2 zip": "nnunet"}


def default_zip_name(dataset: str, format_name: str) -> str:
    """``Dataset042_Liver_autoseg.zip`` / ``..._nnunet.zip``: the format is in the name."""
    return f"{dataset}_{format_name}.zip"


def export_step(
    dataset: str, output_zip: Path, results_root: Path, *, format_name: str = "autoseg"
) -> EngineStep:
    """``autoseg export_model -d DATASET -o ZIP --format F --results ROOT``: every trained
    configuration and fold of the dataset, with their final checkpoints."""
    if format_name not in EXPORT_FORMATS.values():
        raise AutoSegError(
            f"export format {format_name!r} is unknown; use one of {sorted(EXPORT_FORMATS.values())}."
        )
    output = Path(output_zip)
    if output.suffix.lower() != ".zip":
        raise AutoSegError(
            f"{output}: a model is exported as a .zip file. Fix: end the name in .zip."
        )
    if output.exists():
        raise AutoSegError(f"{output} exists; nothing is overwritten. Fix: choose another name.")
    args = ("export_model", "-d", dataset, "-o", os.fspath(output), "--format", format_name)
    label = f"Export {dataset} ({format_name} zip)"
    return EngineStep(EXPORT_KEY, label, (*args, "--results", os.fspath(results_root)))
