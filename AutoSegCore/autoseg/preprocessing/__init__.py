"""Preprocessing: turn raw training cases into cropped, normalized, resampled arrays on disk.

``preprocess_case`` handles one case in memory (training and inference share it);
``preprocess_dataset`` runs it over a raw dataset for the planned configurations.
"""

from __future__ import annotations

from autoseg.preprocessing.case import CaseRecipe, PreprocessedCase, preprocess_case
from autoseg.preprocessing.runner import preprocess_dataset

__all__ = ["CaseRecipe", "PreprocessedCase", "preprocess_case", "preprocess_dataset"]
