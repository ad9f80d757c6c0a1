"""NaN and infinite voxels stored in NIfTI files, which SimpleITK silently reads as 0.

ITK's NIfTI reader replaces non-finite floats with 0, so the reader every stage uses cannot see
them: a scan with a block of NaN trains as a block of zeros. ``verify`` therefore reads the raw
voxels with nibabel (imported only here and only when needed, so importing the engine stays light)
and reports what will happen to them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoseg.errors import Problem

NIFTI_ENDINGS = (".nii", ".nii.gz")
#: The value SimpleITK's NIfTI reader gives NaN and infinite voxels.
ITK_REPLACEMENT = 0


def count_nonfinite(path: Path) -> int:
    """Non-finite voxels stored in a NIfTI file; 0 for integer data or files nibabel cannot read
    (the reader reports those)."""
    import nibabel  # noqa: PLC0415 - lazy: only verify needs it

    try:
        image = nibabel.load(str(path))
        if np.dtype(image.get_data_dtype()).kind != "f":
            return 0
        data = np.asanyarray(image.dataobj)
    except Exception:  # unreadable files are reported by the image reader, not here
        return 0
    return int(data.size - np.count_nonzero(np.isfinite(data)))


def nonfinite_problems(path: Path) -> list[Problem]:
    """A warning for a NIfTI file with NaN/inf voxels, saying what they become."""
    if not Path(path).name.lower().endswith(NIFTI_ENDINGS):
        return []
    bad = count_nonfinite(Path(path))
    if not bad:
        return []
    message = (
        f"{bad} voxel(s) are NaN or infinite in the file; they are read as {ITK_REPLACEMENT}, "
        f"so training and prediction see {ITK_REPLACEMENT} there."
    )
    fix = "Replace them with a deliberate value (e.g. the image minimum) and save the file again."
    return [Problem("warning", str(path), message, fix, "NaN in NIfTI")]
