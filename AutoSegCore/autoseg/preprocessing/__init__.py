"""Preprocessing: turn raw training cases into cropped, normalized, resampled arrays on disk.

``preprocess_case`` handles one case in memory (training and inference share it);
``preprocess_dataset`` runs it over a raw dataset for the planned configurations. The names are
loaded on first use (PEP 562), so that ``autoseg.preprocessing.storage`` can be read from
Slicer's process without importing scipy.
"""

from __future__ import annotations

from autoseg.lazy_exports import lazy_getattr

_EXPORTS = {
    "CaseRecipe": "autoseg.preprocessing.case",
    "PreprocessedCase": "autoseg.preprocessing.case",
    "preprocess_case": "autoseg.preprocessing.case",
    "preprocess_dataset": "autoseg.preprocessing.runner",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
